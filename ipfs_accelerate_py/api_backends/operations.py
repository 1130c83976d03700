"""What a call sends: ``(endpoint, data)`` for chat, completions and embeddings.

Each operation's content is checked before anything is sent (a refusal is an
:class:`InvalidInputError` that says what to change), a keyword that neither
the method nor the provider's API knows is refused with an
:class:`UnknownParameterError` that suggests the closest names, and
``extra_body`` is laid over the body last, unchecked.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

from ..resilience.batching import normalize_inputs
from ..resilience.errors import InvalidInputError, UnknownParameterError
from .state import ClientState

__all__ = [
    "Operations",
    "check_endpoint",
    "check_messages",
    "check_model",
    "model_argument",
    "with_extra_body",
]


class Operations(ClientState):
    """The requests of the public operations, built and checked."""

    OPERATIONS: ClassVar[tuple[str, ...]] = ("chat", "completion", "embeddings")
    _OPERATION_OF: ClassVar[dict[str, str]] = {
        "chat": "chat",
        "completions": "completion",
        "embeddings": "embeddings",
        "add_to_batch": "embeddings",
    }
    """The operation each public method performs, by the method's name."""

    _unnamed_chat_model: ClassVar[str | None] = None
    """The model ``chat`` sends when the call names none (None: it must name one)."""

    def _operation(
        self,
        method: str,
        model_name: Any,
        model: Any,
        content: Any,
        stream: bool,
        params: dict[str, Any],
        extra_body: Any,
    ) -> tuple[str, Any]:
        """``(endpoint, data)`` of a call to the public ``method``: the model
        named either way, the keywords checked against what the provider's
        API documents, and ``extra_body`` laid over the body last."""
        operation = self._OPERATION_OF[method]
        self._check_params(method, operation, params)
        model_name = model_argument(model_name, model)
        if model_name is None and operation == "chat":
            model_name = self._unnamed_chat_model
        endpoint, data = self.operation_request(
            operation, model_name, content, params, stream=stream
        )
        return endpoint, with_extra_body(data, extra_body)

    def _check_params(self, method: str, operation: str, params: Mapping[str, Any]) -> None:
        """Refuse a keyword that neither ``method`` nor the provider's API
        knows: a typo would otherwise be sent as a body field, silently."""
        known = self.provider.body_params.get(operation)
        unknown = [name for name in params if known is not None and name not in known]
        if not unknown or known is None:
            return
        signature = inspect.signature(getattr(type(self), method))
        own = [
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind is not p.VAR_KEYWORD
        ]
        candidates = own + sorted(known)
        described = []
        for name in unknown:
            close = difflib.get_close_matches(name, candidates, n=3)
            described.append(
                f"{name!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
            )
        plural = "s" if len(unknown) > 1 else ""
        raise UnknownParameterError(
            f"{method}() got unknown parameter{plural} {', '.join(described)}; "
            f"to send a field as it is, pass extra_body={{{unknown[0]!r}: ...}}",
            provider=self.provider.name,
        )

    def operation_request(
        self,
        operation: str,
        model_name: str | None = None,
        content: Any = None,
        params: Mapping[str, Any] | None = None,
        *,
        model: str | None = None,
        stream: bool = False,
    ) -> tuple[str, Any]:
        """``(endpoint, data)`` that ``chat`` (``content``: messages), ``completions``
        (a prompt) or ``embeddings`` (an input) sends: the same request, checked the
        same way, for ``queue_with_priority`` (whose future tells attempts and key).
        ``params`` are body fields, sent as given (not checked by name)."""
        if operation not in self.OPERATIONS:
            raise InvalidInputError(
                f"unknown operation {operation!r}: use {', '.join(self.OPERATIONS)}"
            )
        model_name = model_argument(model_name, model)
        body = dict(params or {})
        check_model(model_name)
        if operation == "embeddings":
            normalize_inputs(content)
            return self.provider.embeddings_request(model_name, content, body)
        if operation == "chat":
            check_messages(content)
            return self.provider.chat_request(model_name, content, body, stream)
        if not isinstance(content, (str, list)):
            raise InvalidInputError(
                f"prompt must be a string or a list of strings, not {type(content).__name__}"
            )
        return self.provider.completion_request(model_name, content, body, stream)

    def default_model(self, operation: str) -> str | None:
        """The model a request of ``operation`` uses when it names none (None: it must name one)."""
        spec = self.provider.spec
        return (
            spec.default_embedding_model if operation == "embeddings" else spec.default_chat_model
        )

    @classmethod
    def connection_metadata(cls, base_url: str, api_key: str | None) -> dict[str, Any]:
        """The metadata that points a new client at ``base_url`` with ``api_key``."""
        spec = cls.provider.spec
        metadata = {spec.base_url_metadata[0]: base_url}
        if api_key and spec.key_metadata:
            metadata[spec.key_metadata[0]] = api_key
        return metadata

    def feature_probe(self, tag: str) -> tuple[str, Any]:
        """A small request for the feature checks, tagged ``tag`` (a backend
        without chat or embeddings overrides it)."""
        spec = self.provider.spec
        if spec.default_chat_model:
            return self.provider.chat_request(
                spec.default_chat_model, [{"role": "user", "content": tag}], {}, False
            )
        if spec.default_embedding_model:
            return self.provider.embeddings_request(spec.default_embedding_model, tag, {})
        raise NotImplementedError(f"{type(self).__name__} must say what the feature checks send")


def check_endpoint(endpoint: Any) -> None:
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise InvalidInputError("endpoint must name the API endpoint, e.g. 'chat/completions'")


def model_argument(model_name: Any, model: Any) -> Any:
    """The model a call names, as ``model_name=`` or as ``model=`` (the
    openai SDK's name); both may be given only when they agree."""
    if model is None:
        return model_name
    if model_name is not None and model_name != model:
        raise InvalidInputError(
            f"model_name={model_name!r} and model={model!r} name different models: give one of them "
            "(model= is the openai SDK's name for model_name=)"
        )
    return model


def with_extra_body(data: Any, extra_body: Any) -> Any:
    """``data`` with ``extra_body``'s fields laid over it (sent as they are)."""
    if extra_body is None:
        return data
    if not isinstance(extra_body, Mapping):
        raise InvalidInputError(
            f"extra_body must be a dict of fields to add to the JSON body, not {type(extra_body).__name__}"
        )
    if data is not None and not isinstance(data, Mapping):
        raise InvalidInputError(
            f"request data must be a dict (the JSON body), not {type(data).__name__}"
        )
    return {**(data or {}), **extra_body}


def check_model(model_name: Any) -> None:
    if not isinstance(model_name, str) or not model_name.strip():
        raise InvalidInputError(
            f"model_name must be a non-empty string (e.g. 'gpt-4o-mini'), not {model_name!r}"
        )


def check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidInputError(
            "messages must be a non-empty list like [{'role': 'user', 'content': 'Hello'}], "
            f"not {type(messages).__name__}"
        )
    for i, message in enumerate(messages):
        if not isinstance(message, (dict, Mapping)) or "role" not in message:
            raise InvalidInputError(
                f"messages[{i}] must be a dict with a 'role' (and 'content'), not {message!r:.80}"
            )
