"""``opea``: an OPEA LLM microservice (GenAIComps text generation), whose
OpenAI-compatible chat lives at ``/v1/chat/completions`` (streams included).

Base URL: ``metadata["opea_api_base"]`` or ``OPEA_API_BASE`` (default
``http://localhost:9000/v1``; ``"simulator"`` starts the embedded one).  No
key is needed unless a gateway in front asks for one:
``metadata["opea_api_key"]`` or ``OPEA_API_KEY``.  The microservice offers
chat only: ``completions()``, ``embeddings()`` and ``list_models()`` are
refused before anything is sent.
"""

from __future__ import annotations

from ..providers.openai_compatible import OPEA_WIRE
from .base import BaseApiBackend

__all__ = ["opea"]


class opea(BaseApiBackend):  # noqa: N801 - the seed's name
    provider = OPEA_WIRE
