"""``vllm``: a vLLM OpenAI-compatible server (completions, chat, embeddings,
models).

Base URL: ``metadata["vllm_api_base"]`` or ``VLLM_BASE_URL`` (default
``http://localhost:8000/v1``; ``"simulator"`` starts the embedded one).  No
key is needed unless the server was started with ``--api-key``:
``metadata["vllm_api_key"]`` or ``VLLM_API_KEY``.  Embeddings are batched
for whatever model the server serves (no ``supported_batch_models`` needed).
"""

from __future__ import annotations

from ..providers.openai_compatible import VLLM_WIRE
from .base import BaseApiBackend

__all__ = ["vllm"]


class vllm(BaseApiBackend):  # noqa: N801 - the seed's name
    provider = VLLM_WIRE
