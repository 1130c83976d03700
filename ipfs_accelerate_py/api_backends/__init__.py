"""The backends, under the seed's names::

    from ipfs_accelerate_py.api_backends import openai_api, claude, gemini, ollama

``BACKENDS`` maps each name to its class (what ``--api NAME`` means).
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
from .ollama import ollama
from .opea import opea
from .openai_api import openai_api
from .ovms import ovms
from .s3_kit import s3_kit
from .vllm import vllm

BACKENDS: dict[str, type] = {
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

__all__ = [
    "ApiKeyMultiplexer",
    "BACKENDS",
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
]
