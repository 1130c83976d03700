"""``python -m ipfs_accelerate_py.simulator [flags]``: run the simulator until interrupted."""

import sys

from .command import main

sys.exit(main())
