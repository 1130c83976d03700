"""The backends, under the seed's names::

    from ipfs_accelerate_py.api_backends import openai_api
"""

from .base import BaseApiBackend
from .openai_api import openai_api

__all__ = ["BaseApiBackend", "openai_api"]
