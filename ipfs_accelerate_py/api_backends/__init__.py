"""The backends, under the seed's names::

    from ipfs_accelerate_py.api_backends import openai_api, claude, gemini, ollama

``BACKENDS`` maps each name to its class (what ``--api NAME`` means);
:func:`backend_class` also takes the aliases in ``BACKEND_ALIASES``
(``anthropic`` for ``claude``, ``google`` for ``gemini``), in any case.
"""

from .base import BaseApiBackend
from .claude import claude
from .failover import FailoverChain, FailoverStep
from .gemini import gemini
from .groq import groq
from .hf_tei import hf_tei
from .hf_tgi import hf_tgi
from .llvm import llvm
from .multiplexer import ApiKeyMultiplexer
from .names import BACKEND_ALIASES, canonical_backend_name, describe_backend_names
from .ollama import ollama
from .opea import opea
from .openai_api import openai_api
from .ovms import ovms
from .priority import Priority
from .s3_kit import s3_kit
from .vllm import vllm

BACKENDS: dict[str, type[BaseApiBackend]] = {
    "openai": openai_api,
    "groq": groq,
    "claude": claude,
    "gemini": gemini,
    "ollama": ollama,
    "hf_tgi": hf_tgi,
    "hf_tei": hf_tei,
    "vllm": vllm,
    "opea": opea,
    "ovms": ovms,
    "llvm": llvm,
    "s3_kit": s3_kit,
}


def backend_class(name: str) -> type[BaseApiBackend]:
    """The backend class ``name`` means: one of ``BACKENDS`` or an alias
    (``"anthropic"``, ``"google"``), in any case.  An unknown name raises
    ``KeyError`` (also a ``LookupError``) listing the names and aliases."""
    cls = BACKENDS.get(canonical_backend_name(name))
    if cls is None:
        raise UnknownBackendError(name)
    return cls


class UnknownBackendError(KeyError):
    """A backend name that is neither one of ``BACKENDS`` nor an alias."""

    def __init__(self, name: object) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown API {self.name!r}: choose from {describe_backend_names(BACKENDS)}"


__all__ = [
    "ApiKeyMultiplexer",
    "BACKENDS",
    "BACKEND_ALIASES",
    "BaseApiBackend",
    "FailoverChain",
    "FailoverStep",
    "Priority",
    "UnknownBackendError",
    "backend_class",
    "canonical_backend_name",
    "claude",
    "describe_backend_names",
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
