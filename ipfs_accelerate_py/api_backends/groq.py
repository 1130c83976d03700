"""``groq``: GroqCloud's OpenAI-compatible API (chat, streams, models).

Key: ``metadata["groq_api_key"]`` or ``GROQ_API_KEY``.  Base URL:
``metadata["groq_api_base"]`` or ``GROQ_BASE_URL`` (default
``https://api.groq.com/openai/v1``; ``"simulator"`` starts the embedded one).
Groq has no embeddings and no text completions: ``embeddings()`` and
``completions()`` are refused before anything is sent.  ``GROQ_MODELS``
lists Groq's production models with their token limits.
"""

from __future__ import annotations

from ..providers.openai_compatible import GROQ_MODELS, GROQ_WIRE, GroqModel
from .base import BaseApiBackend

__all__ = ["GROQ_MODELS", "GroqModel", "groq"]


class groq(BaseApiBackend):  # noqa: N801 - the seed's name
    provider = GROQ_WIRE
