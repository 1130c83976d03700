"""The backends, under the seed's names::

    from ipfs_accelerate_py.api_backends import openai_api

``BACKENDS`` maps each name to its class (what ``--api NAME`` means).
"""

from .base import BaseApiBackend
from .openai_api import openai_api

BACKENDS: dict[str, type] = {
    "openai": openai_api,
}

__all__ = ["BACKENDS", "BaseApiBackend", "openai_api"]
