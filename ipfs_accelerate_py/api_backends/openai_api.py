"""``openai_api``: the OpenAI API (or any OpenAI-compatible server).

Key: ``metadata["openai_api_key"]`` or ``OPENAI_API_KEY``.  Base URL:
``metadata["openai_api_base"]`` or ``OPENAI_BASE_URL`` (default
``https://api.openai.com/v1``; ``"simulator"`` starts the embedded one).
"""

from __future__ import annotations

from ..providers.openai import OPENAI, OpenAIWire
from .base import BaseApiBackend

__all__ = ["openai_api"]


class openai_api(BaseApiBackend):  # noqa: N801 - the seed's name
    provider = OpenAIWire(OPENAI)
