"""ipfs_accelerate_py: one resilient client layer over model-serving APIs.

The public names, importable from here::

    from ipfs_accelerate_py import openai_api, Priority, RateLimitError

- the backends under the seed's names (``openai_api``, ``claude``, ``gemini``,
  ``groq``, ``ollama``, ``hf_tgi``, ``hf_tei``, ``vllm``, ``opea``, ``ovms``,
  ``llvm``, ``s3_kit``), ``BaseApiBackend``, ``FailoverChain``,
  ``FailoverStep``, ``ApiKeyMultiplexer``;
- ``Priority`` (``HIGH``, ``NORMAL``, ``LOW``), ``Settings`` (a client's typed
  settings), ``ChunkStream`` and ``StreamChunk`` (what ``stream=True`` returns);
- every error class (``ApiError`` and its subclasses).

Each is loaded on first use, so ``import ipfs_accelerate_py`` stays cheap
and never imports an optional extra (boto3 is imported only when an
``s3_kit`` client makes its first request).
"""

from __future__ import annotations

import importlib
import logging as _logging
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

# A library logs; the application decides where it goes.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

_BACKENDS = (
    "ApiKeyMultiplexer",
    "BaseApiBackend",
    "FailoverChain",
    "FailoverStep",
    "claude",
    "gemini",
    "groq",
    "hf_tei",
    "hf_tgi",
    "llvm",
    "ollama",
    "opea",
    "openai_api",
    "ovms",
    "s3_kit",
    "vllm",
)
_ERRORS = (
    "ApiError",
    "AuthenticationError",
    "BudgetExceededError",
    "CancelledRequestError",
    "CircuitOpenError",
    "ConflictError",
    "DeadlineExceededError",
    "InvalidInputError",
    "InvalidRequestError",
    "MalformedResponseError",
    "NetworkError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "QueueFullError",
    "RateLimitDeadlineError",
    "RateLimitError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "ServerError",
    "SettingError",
    "ShutdownError",
    "StreamStalledError",
    "UnknownParameterError",
)
_HOME: dict[str, str] = {
    **dict.fromkeys(_BACKENDS, ".api_backends"),
    **dict.fromkeys(_ERRORS, ".resilience.errors"),
    "Priority": ".api_backends.priority",
    "Settings": ".engine.settings",
    "Price": ".resilience.prices",
    "PriceTable": ".resilience.prices",
    "DEFAULT_PRICES": ".resilience.prices",
    "ChunkStream": ".engine.stream",
    "StreamChunk": ".engine.stream",
}
"""Where each public name lives (loaded on first use)."""

__all__ = [
    "ApiError",
    "ApiKeyMultiplexer",
    "AuthenticationError",
    "BaseApiBackend",
    "BudgetExceededError",
    "CancelledRequestError",
    "ChunkStream",
    "CircuitOpenError",
    "ConflictError",
    "DEFAULT_PRICES",
    "DeadlineExceededError",
    "FailoverChain",
    "FailoverStep",
    "InvalidInputError",
    "InvalidRequestError",
    "MalformedResponseError",
    "NetworkError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "Price",
    "PriceTable",
    "Priority",
    "QueueFullError",
    "RateLimitDeadlineError",
    "RateLimitError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "ServerError",
    "SettingError",
    "Settings",
    "ShutdownError",
    "StreamChunk",
    "StreamStalledError",
    "UnknownParameterError",
    "__version__",
    "claude",
    "gemini",
    "groq",
    "hf_tei",
    "hf_tgi",
    "llvm",
    "ollama",
    "opea",
    "openai_api",
    "ovms",
    "s3_kit",
    "vllm",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # the next lookup is a plain global
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what a type checker and an IDE see: the same names, imported
    from .api_backends.base import BaseApiBackend
    from .api_backends.claude import claude
    from .api_backends.failover import FailoverChain, FailoverStep
    from .api_backends.gemini import gemini
    from .api_backends.groq import groq
    from .api_backends.hf_tei import hf_tei
    from .api_backends.hf_tgi import hf_tgi
    from .api_backends.llvm import llvm
    from .api_backends.multiplexer import ApiKeyMultiplexer
    from .api_backends.ollama import ollama
    from .api_backends.opea import opea
    from .api_backends.openai_api import openai_api
    from .api_backends.ovms import ovms
    from .api_backends.priority import Priority
    from .api_backends.s3_kit import s3_kit
    from .api_backends.vllm import vllm
    from .engine.settings import Settings
    from .engine.stream import ChunkStream, StreamChunk
    from .resilience.errors import (
        ApiError,
        AuthenticationError,
        BudgetExceededError,
        CancelledRequestError,
        CircuitOpenError,
        ConflictError,
        DeadlineExceededError,
        InvalidInputError,
        InvalidRequestError,
        MalformedResponseError,
        NetworkError,
        NotFoundError,
        OverloadedError,
        PermissionDeniedError,
        QueueFullError,
        RateLimitDeadlineError,
        RateLimitError,
        RequestTimeoutError,
        ResponseTooLargeError,
        ServerError,
        SettingError,
        ShutdownError,
        StreamStalledError,
        UnknownParameterError,
    )
    from .resilience.prices import DEFAULT_PRICES, Price, PriceTable
