"""Driving a streaming attempt.

Until its first chunk a stream is like any attempt (``SENDING``): a failure,
a malformed event or no chunk within ``timeout`` is concluded and raised, so
the request is retried (on another key when one is free).  At the first
chunk (``FIRST_CHUNK``) the breaker hears a success, the caller gets the
stream and the request is ``STREAMING``: :meth:`Streams._feed` carries it to
its end (``STREAM_END``, ``STALL``, ``FAILED`` or ``CANCEL`` when the caller
closes it), holding the key lease until then.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ..resilience.errors import (
    ApiError,
    CancelledRequestError,
    MalformedResponseError,
    NetworkError,
    RequestTimeoutError,
    StreamStalledError,
)
from ..transport.base import HttpRequest, HttpResponse, StreamResponse
from ..transport.sse import iter_ndjson, iter_sse
from .attempt import AttemptHold, Attempts, Secrets
from .deadlines import StallWatch
from .lifecycle import Event
from .request import Request
from .stream import END_OF_STREAM, ChunkStream, StreamProgress

__all__ = ["Streams"]


class Streams(Attempts):
    async def _attempt_stream(
        self,
        req: Request,
        hold: AttemptHold,
        http_request: HttpRequest,
        secrets: Secrets,
        timeout: float,
    ) -> None:
        """A streaming attempt up to its first chunk, then :meth:`_feed`."""
        watch = StallWatch(self.loop, asyncio.current_task(), timeout)
        response: HttpResponse | StreamResponse | None = None
        started_ok = False
        try:
            try:
                response = await self._send(req, http_request)
                assert isinstance(response, StreamResponse)
                events = _decode(self.provider, response, http_request.max_line_bytes)
                chunk, done = await self._next_chunk(events)
            except asyncio.CancelledError:
                if not watch.timed_out():
                    raise
                error: ApiError = RequestTimeoutError(
                    f"no stream chunk within {timeout:g}s of sending (see client.timeout)",
                    provider=self.provider.name,
                    request_id=req.request_id,
                    attempt=req.attempts,
                )
                hold.conclude(req, error, None)
                raise error from None
            except ApiError as error:
                error.redact(secrets)
                error.attempt = error.attempt or req.attempts
                hold.conclude(req, error, error.status)
                raise
            started_ok = True
        finally:
            # whatever ended it before its first chunk: the stream is closed here
            if not started_ok:
                watch.stop()
                if isinstance(response, StreamResponse):
                    await response.aclose()
        hold.conclude(req, None, response.status)  # started: a success for the breaker
        req.move(Event.FIRST_CHUNK)
        await self._feed(req, response, events, chunk, done, watch, secrets)

    async def _next_chunk(self, events: AsyncIterator[Any]) -> tuple[Any, bool]:
        """The next chunk the provider hands over (skipping pings and the
        like), and whether the stream is complete after it."""
        parse = self.provider.parse_stream_event
        while True:
            try:
                event = await anext(events)
            except StopAsyncIteration:
                raise NetworkError(
                    "stream ended without its end marker", provider=self.provider.name
                ) from None
            except ApiError:
                raise
            except (
                Exception
            ) as exc:  # a transport that did not translate its own: said in our words
                raise NetworkError(
                    f"the stream broke ({type(exc).__name__}: {exc})", provider=self.provider.name
                ) from exc
            chunk, done = self.parsed(parse, event)
            if chunk is not None or done:
                return chunk, done

    async def _feed(
        self,
        req: Request,
        response: StreamResponse,
        events: AsyncIterator[Any],
        chunk: Any,
        done: bool,
        watch: StallWatch,
        secrets: Secrets,
    ) -> None:
        """Hand the stream to the caller and feed it until its end.

        The feeder keeps only the stream's channel, never the stream itself,
        so a stream the caller drops is collected and its close aborts this.
        """
        task = asyncio.current_task()
        stream = ChunkStream(req.request_id, lambda: self.call_soon(_cancel_task, task))
        channel = stream.channel
        req.future._complete(stream, None, req.attempts, req.last_key)
        del stream
        stall = self.settings["stream_stall_timeout"]
        progress = StreamProgress(self.clock.now())
        watch.restart(stall)
        error: ApiError | None = None
        event = Event.STREAM_END
        try:
            while True:
                if chunk is not None:
                    item = self.parsed(progress.chunk, self.provider, chunk)
                    # the caller has fallen behind: wait for it, not for the server
                    if channel.put(item):
                        watch.pause()
                        await channel.room()
                        watch.resume()
                if done:
                    break
                chunk, done = await self._next_chunk(events)
                watch.touch()
        except asyncio.CancelledError:
            if not watch.timed_out():
                watch.stop()
                closed = CancelledRequestError(
                    "stream closed by the caller", request_id=req.request_id
                )
                req.move(Event.CANCEL)
                self._record_stream(req, progress, closed)
                channel.put(closed)
                await response.aclose()
                raise
            event = Event.STALL
            error = StreamStalledError(
                f"stream stalled: no chunk for {stall:g}s (see client.stream_stall_timeout)",
                provider=self.provider.name,
                attempt=req.attempts,
            )
        except ApiError as exc:
            event = Event.FAILED
            error = exc.redact(secrets)  # an error event may quote the key too
        except Exception as exc:  # whatever else: the caller still hears how its stream ended
            event = Event.FAILED
            error = MalformedResponseError(
                f"the stream could not be read ({type(exc).__name__}: {exc})",
                provider=self.provider.name,
            )
            error.__cause__ = exc
            error = error.redact(secrets)
        watch.stop()
        await response.aclose()
        if error is not None:
            error = self.annotate(error, req)
            error.attempt = error.attempt or req.attempts
            error.chunks_received, error.partial_text = progress.count, progress.text()
            error.message = f"{error.message} (stream ended after {progress.count} chunks, {progress.chars} characters of text)"
        req.move(event)
        # before the caller sees the end, so its get_stats() includes it
        self._record_stream(req, progress, error)
        channel.put(error if error is not None else END_OF_STREAM)

    def _record_stream(
        self, req: Request, progress: StreamProgress, error: BaseException | None
    ) -> None:
        now = self.clock.now()
        # what it used counts, however it ended
        self.record_request(req, None, error, now, usage=progress.usage, stream=progress)
        self.stats.record_stream(
            outcome="completed" if error is None else getattr(error, "kind", "error"),
            time_to_first_token=progress.started - req.submitted_at,
            output_tokens=progress.output_tokens(),
            generation_seconds=now - progress.started,
        )


def _decode(provider: Any, response: StreamResponse, max_event_bytes: int | None) -> Any:
    """The response's events, decoded by the provider's stream format."""
    if provider.stream_format == "sse":
        return iter_sse(response.lines(), max_event_bytes)
    return iter_ndjson(response.lines())


def _cancel_task(task: asyncio.Task[Any] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
