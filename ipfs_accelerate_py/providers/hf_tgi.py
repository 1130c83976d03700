"""Hugging Face text-generation-inference (TGI): its own wire and its OpenAI one.

Native routes, at the server's root::

    POST /generate          {"inputs": str, "parameters": {...}}
                            -> {"generated_text": str, "details"?: {...}}
    POST /generate_stream   SSE ``data:`` events {"index", "token": {...},
                            "generated_text": null | str, "details": null | {...}};
                            the last event carries the whole ``generated_text``
                            (not read as text again: the tokens were) and, when
                            asked for, ``details`` (finish reason, token counts)
    GET  /info              {"model_id", "max_input_tokens", "max_client_batch_size", ...}

and the OpenAI-compatible ``POST /v1/chat/completions`` (and ``/v1/completions``),
streamed as OpenAI chunks ending with ``data: [DONE]``: those are mapped by
:class:`~.openai.OpenAIWire` itself (this adapter holds one and delegates).

Errors, keys and ``/info`` are those of :mod:`.huggingface`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..transport.base import HttpResponse
from .base import (
    EMPTY_DELTA,
    Event,
    ProviderSpec,
    StreamDelta,
    finish_reason,
    sse_event,
    token_count,
)
from .huggingface import HuggingFaceWire, hf_spec, hf_stream_error
from .openai import OPENAI_CHAT_PARAMS, OPENAI_COMPLETION_PARAMS, OpenAIWire

__all__ = ["TGI", "TGIWire"]

TGI_MODEL = "tgi"
"""What TGI's OpenAI routes accept as the model of the one model it serves."""

TGI = hf_spec("hf_tgi", "tgi", default_chat_model=TGI_MODEL)

OPENAI_PREFIX = "v1/"

GENERATE = "generate"
GENERATE_STREAM = "generate_stream"


class TGIWire(HuggingFaceWire):
    """TGI's native routes, and its OpenAI routes through an :class:`OpenAIWire`."""

    body_params = {  # its /v1 routes: OpenAI's parameters and a few of TGI's own (no embeddings: TEI's job)
        "chat": OPENAI_CHAT_PARAMS | {"guideline", "tool_prompt"},
        "completion": OPENAI_COMPLETION_PARAMS | {"repetition_penalty"},
    }

    get_paths = HuggingFaceWire.get_paths | {"v1/models"}
    server = "text-generation-inference"

    def __init__(self, spec: ProviderSpec = TGI) -> None:
        super().__init__(spec)
        self.openai = OpenAIWire(spec)

    # ----------------------------------------------------------- responses

    def parse_response(self, endpoint: str, response: HttpResponse) -> Any:
        if self.endpoint_path(endpoint).startswith(OPENAI_PREFIX):
            return self.openai.parse_response(endpoint, response)
        return super().parse_response(endpoint, response)

    def usage(self, result: Any) -> tuple[int, int]:
        """OpenAI routes: ``usage``.  Native routes: ``details.generated_tokens``
        out, and in ``details.input_length`` (streams) or the prefill tokens
        (when ``decoder_input_details`` was asked for)."""
        if isinstance(result, dict) and isinstance(result.get("usage"), dict):
            return super().usage(result)
        details = result.get("details") if isinstance(result, dict) else None
        if not isinstance(details, dict):
            return 0, 0
        tokens_in = details.get("input_length")
        if not isinstance(tokens_in, int):
            prefill = details.get("prefill")
            tokens_in = len(prefill) if isinstance(prefill, list) else 0
        return token_count(tokens_in), token_count(details.get("generated_tokens"))

    # ------------------------------------------------------------- streams

    def parse_stream_event(self, event: Event) -> tuple[Any, bool]:
        """Native events end with the one whose ``generated_text`` is set;
        OpenAI chunks end with ``[DONE]`` (told apart by their content, as
        the engine does not say which route a stream came from)."""
        chunk, done = self.openai.sse_json(sse_event(event))
        if not isinstance(chunk, dict):
            return chunk, done
        if "token" in chunk:
            return chunk, chunk.get("generated_text") is not None
        if "error" in chunk and "choices" not in chunk:
            raise hf_stream_error(self.name, chunk)
        return chunk, False

    def stream_delta(self, chunk: Any) -> StreamDelta:
        """A native event: ``token.text`` unless the token is ``special``
        (``</s>``); on the last, ``details.finish_reason`` and the usage
        (``details.generated_tokens`` out, ``details.input_length`` in where
        sent).  An OpenAI chunk from the /v1 routes: OpenAI's mapping."""
        if not isinstance(chunk, dict):
            return EMPTY_DELTA
        if "token" not in chunk:
            return self.openai.stream_delta(chunk)
        token = chunk.get("token")
        text = (
            token.get("text")
            if isinstance(token, dict) and token.get("special") is not True
            else None
        )
        details = chunk.get("details")
        details = details if isinstance(details, dict) else {}
        return StreamDelta(
            text=text if isinstance(text, str) else "",
            finish_reason=finish_reason(details.get("finish_reason")),
            usage=self.usage(chunk) if isinstance(details.get("generated_tokens"), int) else None,
        )

    def reply_text(self, result: Any) -> str:
        """``generated_text`` of /generate, or the chat message of /v1."""
        if isinstance(result, dict) and "generated_text" in result:
            return result.get("generated_text") or ""
        return self.openai.reply_text(result)

    # ---------------------------------------------------------- operations

    def generate_request(
        self, prompt: str, params: Mapping[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        """``/generate`` (or ``/generate_stream``) for ``prompt`` with TGI's ``parameters``."""
        data: dict[str, Any] = {"inputs": prompt}
        if params:
            data["parameters"] = dict(params)
        return (GENERATE_STREAM if stream else GENERATE), data

    def chat_request(
        self, model: str, messages: list[Any], params: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        endpoint, data = self.openai.chat_request(model, messages, params, stream)
        return OPENAI_PREFIX + endpoint, data

    def completion_request(
        self, model: str, prompt: Any, params: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        endpoint, data = self.openai.completion_request(model, prompt, params, stream)
        return OPENAI_PREFIX + endpoint, data
