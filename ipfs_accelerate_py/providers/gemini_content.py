"""What a Gemini request carries: OpenAI-style messages and parameters
turned into ``contents``, ``systemInstruction`` and ``generationConfig``.

Pure functions, no I/O.  Everything refused is refused with an
:class:`InvalidInputError` that says what is expected instead.

Messages
    ``system`` (and ``developer``) messages become ``systemInstruction``;
    ``user`` stays ``user``; ``assistant`` becomes ``model`` (``model`` is
    taken as is).  A message's ``content`` is a string, one part or a list
    of parts.  A part is a string, ``{"type": "text", "text"}``, an
    OpenAI image part ``{"type": "image_url", "image_url": {"url":
    "data:<mime>;base64,<data>"}}`` (-> ``inline_data``), raw image ``bytes``
    (the format is recognised from its first bytes; see :func:`image_part`)
    or a part already in Gemini's own form (``text``, ``inline_data``,
    ``file_data``, ``functionCall``, ...), passed through.

Parameters
    OpenAI names are mapped (``max_tokens`` -> ``maxOutputTokens``, ``stop``
    -> ``stopSequences``, ``n`` -> ``candidateCount``, ...); Gemini's own
    ``generationConfig`` field names and top-level request fields
    (``safetySettings``, ``tools``, ``toolConfig``, ``cachedContent``) are
    taken as they are.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from ..resilience.errors import InvalidInputError

__all__ = [
    "EMBED_PARAMS",
    "GENERATION_PARAMS",
    "embed_params",
    "generation_fields",
    "image_part",
    "to_contents",
]

SYSTEM_ROLES = frozenset({"system", "developer"})
ROLES = {"user": "user", "assistant": "model", "model": "model"}
NATIVE_PART_KEYS = frozenset(
    {
        "text",
        "inline_data",
        "inlineData",
        "file_data",
        "fileData",
        "functionCall",
        "function_call",
        "functionResponse",
        "function_response",
        "executableCode",
        "codeExecutionResult",
        "thought",
    }
)
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

# OpenAI (or snake_case) parameter -> generationConfig field
_GENERATION_ALIASES = {
    "max_tokens": "maxOutputTokens",
    "max_completion_tokens": "maxOutputTokens",
    "max_output_tokens": "maxOutputTokens",
    "top_p": "topP",
    "top_k": "topK",
    "n": "candidateCount",
    "candidate_count": "candidateCount",
    "stop": "stopSequences",
    "stop_sequences": "stopSequences",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "response_mime_type": "responseMimeType",
    "response_schema": "responseSchema",
    "response_logprobs": "responseLogprobs",
    "thinking_config": "thinkingConfig",
}
_GENERATION_FIELDS = frozenset(
    {
        "temperature",
        "topP",
        "topK",
        "candidateCount",
        "maxOutputTokens",
        "stopSequences",
        "presencePenalty",
        "frequencyPenalty",
        "seed",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "responseLogprobs",
        "logprobs",
        "thinkingConfig",
        "responseModalities",
        "speechConfig",
    }
)
# top-level GenerateContentRequest fields, by any of their names
_REQUEST_FIELDS = {
    "safetySettings": "safetySettings",
    "safety_settings": "safetySettings",
    "tools": "tools",
    "toolConfig": "toolConfig",
    "tool_config": "toolConfig",
    "cachedContent": "cachedContent",
    "cached_content": "cachedContent",
}
_EMBED_ALIASES = {
    "task_type": "taskType",
    "taskType": "taskType",
    "title": "title",
    "output_dimensionality": "outputDimensionality",
    "outputDimensionality": "outputDimensionality",
    "dimensions": "outputDimensionality",
}


GENERATION_PARAMS = frozenset(
    {
        *_GENERATION_ALIASES,
        *_GENERATION_FIELDS,
        *_REQUEST_FIELDS,
        "response_format",
        "generationConfig",
        "generation_config",
    }
)
"""Every parameter :func:`generation_fields` takes (chat and completions)."""
EMBED_PARAMS = frozenset(_EMBED_ALIASES)
"""Every parameter :func:`embed_params` takes."""


# ---------------------------------------------------------------- messages


def to_contents(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(contents, system_parts)`` for OpenAI-style ``messages``."""
    contents: list[dict[str, Any]] = []
    system: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        parts = _parts(message.get("content"), f"messages[{i}]")
        if role in SYSTEM_ROLES:
            system.extend(parts)
        elif role in ROLES:
            contents.append({"role": ROLES[role], "parts": parts})
        else:
            raise InvalidInputError(
                f"messages[{i}] has role {role!r}: the gemini backend takes 'user', 'assistant' (or 'model') and 'system'"
            )
    if not contents:
        raise InvalidInputError(
            "messages need at least one 'user' or 'assistant' message besides 'system' ones"
        )
    return contents, system


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, (str, bytes, bytearray, Mapping)):
        return [_part(content, where)]
    if isinstance(content, list) and content:
        return [_part(part, f"{where}.content[{j}]") for j, part in enumerate(content)]
    raise InvalidInputError(
        f"{where} content must be a string, a part or a non-empty list of parts, not {type(content).__name__}"
    )


def _part(part: Any, where: str) -> dict[str, Any]:
    if isinstance(part, str):
        return {"text": part}
    if isinstance(part, (bytes, bytearray)):
        return image_part(bytes(part))
    if not isinstance(part, Mapping):
        raise InvalidInputError(
            f"{where} must be a string, bytes or a dict part, not {type(part).__name__}"
        )
    kind = part.get("type")
    if kind == "text" and isinstance(part.get("text"), str):
        return {"text": part["text"]}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        return data_url_part(url, where)
    if kind is None and NATIVE_PART_KEYS & part.keys():
        return dict(part)
    raise InvalidInputError(
        f"{where}: unknown part {part!r:.80}; expected {{'type': 'text', 'text': ...}}, "
        "{'type': 'image_url', 'image_url': {'url': 'data:image/png;base64,...'}}, bytes, or a Gemini part"
    )


def data_url_part(url: Any, where: str = "image_url") -> dict[str, Any]:
    """``data:<mime>;base64,<data>`` -> ``{"inline_data": {"mime_type", "data"}}``."""
    if not isinstance(url, str) or not url.startswith("data:"):
        raise InvalidInputError(
            f"{where}: Gemini takes images inline: give a data URL ('data:image/png;base64,...') "
            "or image_part(raw_bytes); a file from the Files API goes as {'file_data': {'mime_type', 'file_uri'}}"
        )
    header, _, payload = url.partition(",")
    mime = header[len("data:") :].split(";", 1)[0]
    if not header.endswith(";base64") or not mime or not payload:
        raise InvalidInputError(
            f"{where}: expected 'data:<mime type>;base64,<data>', got {url[:40]!r}..."
        )
    return {"inline_data": {"mime_type": mime, "data": payload.strip()}}


def image_part(data: bytes, mime_type: str | None = None) -> dict[str, Any]:
    """An inline image part from raw bytes; PNG, JPEG, GIF and WebP are
    recognised, any other format needs its ``mime_type``."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise InvalidInputError("image_part takes the image's raw bytes (non-empty)")
    mime = mime_type or _sniff(bytes(data))
    if not mime:
        raise InvalidInputError(
            "image_part: unknown image format; pass mime_type, e.g. 'image/heic'"
        )
    return {"inline_data": {"mime_type": mime, "data": base64.b64encode(data).decode("ascii")}}


def _sniff(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in _MAGIC if data.startswith(magic)), None)


# ---------------------------------------------------------------- parameters


def generation_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level request fields for ``params``, ``generationConfig`` included."""
    fields: dict[str, Any] = {}
    config = dict(params.get("generationConfig") or params.get("generation_config") or {})
    for name, value in params.items():
        if name in ("generationConfig", "generation_config"):
            continue
        if name in _REQUEST_FIELDS:
            fields[_REQUEST_FIELDS[name]] = value
        elif name == "response_format":
            config["responseMimeType"] = _mime_for(value)
        elif name in _GENERATION_ALIASES or name in _GENERATION_FIELDS:
            field = _GENERATION_ALIASES.get(name, name)
            config[field] = (
                [value] if field == "stopSequences" and isinstance(value, str) else value
            )
        else:
            raise InvalidInputError(
                f"unknown parameter {name!r} for gemini: use temperature, max_tokens, top_p, top_k, stop, n, "
                "seed, a generationConfig field, or safetySettings, tools, toolConfig, cachedContent"
            )
    if config:
        fields["generationConfig"] = config
    return fields


def _mime_for(response_format: Any) -> str:
    kind = response_format.get("type") if isinstance(response_format, Mapping) else response_format
    if kind == "json_object":
        return "application/json"
    if kind == "text":
        return "text/plain"
    raise InvalidInputError(
        f"response_format {response_format!r:.60} is not supported by gemini: use {{'type': 'json_object'}} "
        "or 'text', or pass responseSchema"
    )


def embed_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``task_type``, ``title``, ``output_dimensionality`` (or ``dimensions``)
    as EmbedContentRequest fields."""
    out = {}
    for name, value in params.items():
        if name not in _EMBED_ALIASES:
            raise InvalidInputError(
                f"unknown embeddings parameter {name!r} for gemini: use task_type, title, "
                "output_dimensionality (or dimensions)"
            )
        out[_EMBED_ALIASES[name]] = value
    return out
