"""The admin endpoints under ``/_admin/`` (never counted, never faulted).

Every admin request first passes :func:`.admin_guard.admin_refusal`: the admin
token as ``Authorization: Bearer <token>``, no cross-origin browser request,
and ``Content-Type: application/json`` on POSTs; a refusal is an OpenAI-style
JSON error (401, 403 or 415), sent before any request body is read.

``GET  /_admin/counters``  the counters snapshot (see :mod:`.counters`).
``GET  /_admin/config``    ``{"scenario": {...}, "pending": {...}}``; keys shown as fingerprints.
``POST /_admin/config``    a JSON object of scenario fields merged into the running scenario;
                           unknown or invalid fields -> 400 naming them in ``error.param``
                           (the first) and ``fields`` (all); answers like GET.
``POST /_admin/reset``     zero the counters; unless the body is ``{"scenario": false}`` the
                           scenario, its script and countdowns go back to the starting ones.
``POST /_admin/script``    a list of script entries, or ``{"responses": [...], "path":
                           "/v1/embeddings", "append": false}``; replaces (or extends) the
                           pending script; answers ``{"pending": n}``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from . import openai_wire as wire
from .admin_guard import admin_refusal
from .behaviour import Behaviour
from .counters import Counters, key_fingerprint
from .request_body import send_continue
from .scenario import ScenarioError
from .wireformat import JsonObject

__all__ = ["AdminHandler", "ADMIN_PREFIX"]

ADMIN_PREFIX = "/_admin/"


def _json(status: int, body: Any) -> web.Response:
    return web.Response(
        status=status, body=wire.dumps(body), headers={"Content-Type": "application/json"}
    )


def _bad(message: str, *, param: Any = None, fields: Any = None) -> web.Response:
    body = wire.error_body(400, message, param=param)
    if fields is not None:
        body["fields"] = fields
    return _json(400, body)


class AdminHandler:
    """Serves ``/_admin/*`` over a :class:`Behaviour` and :class:`Counters`."""

    def __init__(self, behaviour: Behaviour, counters: Counters, token: str) -> None:
        if not token:
            raise ValueError("the admin endpoint needs a non-empty token")
        self._token = token
        self._behaviour = behaviour
        self._counters = counters
        self._routes = {
            ("GET", "counters"): self._get_counters,
            ("GET", "config"): self._get_config,
            ("POST", "config"): self._post_config,
            ("POST", "reset"): self._post_reset,
            ("POST", "script"): self._post_script,
        }

    async def handle(self, request: web.BaseRequest, path: str) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            response = _json(
                refusal.status, wire.error_body(refusal.status, refusal.message, code=refusal.code)
            )
            response.headers.extend(refusal.headers)
            return response
        action = self._routes.get((request.method, path[len(ADMIN_PREFIX) :]))
        if action is None:
            return _json(404, wire.error_body(404, f"Invalid URL ({request.method} {path})"))
        await send_continue(request)  # every admin call with a body reads it
        payload = None
        if request.method == "POST":
            raw = await request.read()
            try:
                payload = json.loads(raw) if raw.strip() else None
            except ValueError:
                return _bad("The admin request body is not valid JSON.")
        return action(payload)

    def _refusal(self, request: web.BaseRequest) -> Any:
        local = request.transport.get_extra_info("sockname") if request.transport else None
        host, port = (local[0], local[1]) if isinstance(local, tuple) else (None, None)
        return admin_refusal(
            request.method, request.headers, self._token, local_host=host, local_port=port
        )

    def config(self) -> JsonObject:
        return {
            "scenario": self._behaviour.scenario.to_dict(key_fingerprint),
            "pending": self._behaviour.pending(),
        }

    def _get_counters(self, payload: Any) -> web.Response:
        return _json(200, self._counters.snapshot())

    def _get_config(self, payload: Any) -> web.Response:
        return _json(200, self.config())

    def _post_config(self, payload: Any) -> web.Response:
        if not isinstance(payload, dict):
            return _bad("POST /_admin/config takes a JSON object of scenario fields.")
        try:
            self._behaviour.configure(payload)
        except ScenarioError as exc:
            return _bad(
                str(exc),
                param=exc.fields[0] if exc.fields else None,
                fields={"unknown": list(exc.unknown), "invalid": exc.invalid},
            )
        return _json(200, self.config())

    def _post_reset(self, payload: Any) -> web.Response:
        if payload is not None and (
            not isinstance(payload, dict)
            or set(payload) - {"scenario"}
            or not isinstance(payload.get("scenario", True), bool)
        ):
            return _bad('POST /_admin/reset takes nothing or {"scenario": true|false}.')
        self._counters.reset()
        self._behaviour.reset(scenario=(payload or {}).get("scenario", True))
        return _json(200, self.config())

    def _post_script(self, payload: Any) -> web.Response:
        if isinstance(payload, list):
            payload = {"responses": payload}
        if (
            not isinstance(payload, dict)
            or "responses" not in payload
            or set(payload) - {"responses", "path", "append"}
        ):
            return _bad(
                "POST /_admin/script takes a list of entries or "
                '{"responses": [...], "path": ..., "append": false}.'
            )
        try:
            pending = self._behaviour.set_script(
                payload["responses"],
                path=payload.get("path"),
                append=bool(payload.get("append", False)),
            )
        except ValueError as exc:
            return _bad(f"Invalid script: {exc}", param="responses")
        return _json(200, {"pending": pending})
