"""``claude``: the Anthropic Messages API.

Key: ``metadata["anthropic_api_key"]`` or ``metadata["claude_api_key"]`` or
``ANTHROPIC_API_KEY``.  Base URL: ``metadata["anthropic_api_base"]`` (or
``claude_api_base``) or ``ANTHROPIC_BASE_URL`` (default
``https://api.anthropic.com``; ``"simulator"`` starts the embedded one).

``chat(model, messages)`` sends ``POST /v1/messages``: system messages become
the top-level ``system`` prompt, ``max_tokens`` defaults to
:data:`~ipfs_accelerate_py.providers.anthropic.DEFAULT_MAX_TOKENS`, and
``tools`` / ``tool_choice`` / content blocks pass through.  With
``stream=True`` the chunks are Anthropic's stream events
(``message_start`` ... ``message_stop``, without ``ping``).
Anthropic has no embeddings: ``embeddings()`` is refused before sending.
"""

from __future__ import annotations

from typing import Any

from ..providers.anthropic import ANTHROPIC, AnthropicWire
from ..resilience.errors import InvalidInputError, MalformedResponseError
from .base import BaseApiBackend
from .operations import check_messages, check_model

__all__ = ["claude"]


class claude(BaseApiBackend):  # noqa: N801 - the seed's name
    provider = AnthropicWire(ANTHROPIC)

    def count_tokens(
        self, model_name: str, messages: list[Any], *, priority: int | None = None, **params: Any
    ) -> int:
        """Input tokens ``messages`` would cost with ``model_name``
        (``POST /v1/messages/count_tokens``; ``system``, ``tools`` count too)."""
        check_model(model_name)
        check_messages(messages)
        endpoint, data = self.provider.count_tokens_request(model_name, messages, params)
        result = self._call(endpoint, data, priority=priority)
        tokens = result.get("input_tokens") if isinstance(result, dict) else None
        if not isinstance(tokens, int) or isinstance(tokens, bool):
            raise MalformedResponseError(
                f"count_tokens answered without input_tokens: {result!r:.120}",
                provider=self.provider.name,
            )
        return tokens

    def get_model(self, model_id: str) -> dict[str, Any]:
        """One model's description (``GET /v1/models/{model_id}``)."""
        if not isinstance(model_id, str) or not model_id.strip() or "/" in model_id:
            raise InvalidInputError(
                f"model_id must be a model name like 'claude-sonnet-4-5', not {model_id!r}"
            )
        endpoint, data = self.provider.model_request(model_id.strip())
        return self._call_json(endpoint, data)
