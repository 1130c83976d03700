"""ipfs_accelerate_py: one resilient client layer over model-serving APIs."""

__version__ = "0.1.0"

import logging as _logging

# A library logs; the application decides where it goes.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
