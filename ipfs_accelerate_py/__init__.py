"""ipfs_accelerate_py: one resilient client layer over model-serving APIs."""

import logging as _logging

from ._version import __version__ as __version__

# A library logs; the application decides where it goes.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())
