"""Request bodies on a keep-alive connection: ``Expect: 100-continue``, and bodies left unread.

aiohttp's low-level server does neither by itself (its ``expect_handler`` hook
belongs to the URL dispatcher, which the simulator does not use):

* A client that sends ``Expect: 100-continue`` (botocore on every upload)
  holds its body back until the interim ``100 Continue`` -- or, failing that,
  until its own timer runs out (1 s for botocore).  :func:`read_body` sends
  the interim answer just before it reads a body that has not arrived yet.
* An answer made before the body was read (a refused key, an outage, a
  scripted answer, a 404/405) must not leave the body's bytes to be parsed
  as the next request.  :func:`settle_unread_body` decides, once the answer
  is made: a body that has fully arrived is no problem; one the client holds
  back (``Expect`` and no ``100 Continue`` sent: it may never come) or one
  too big or of unknown length to discard closes the connection after the
  answer (``Connection: close``); a small one still arriving is read and
  discarded by the server after the answer, and the connection kept.
"""

from __future__ import annotations

from aiohttp import web

__all__ = [
    "CONTINUE",
    "DISCARD_LIMIT",
    "expects_continue",
    "read_body",
    "send_continue",
    "settle_unread_body",
]

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
DISCARD_LIMIT = 1 << 20
"""Largest unread body (bytes, by Content-Length) read and discarded to keep the connection."""
_HTTP_11 = (1, 1)


def expects_continue(request: web.BaseRequest) -> bool:
    """Whether the client waits for ``100 Continue`` before sending its body (HTTP/1.1 only)."""
    expect = request.headers.get("Expect")
    return expect is not None and expect.lower() == "100-continue" and request.version >= _HTTP_11


async def send_continue(request: web.BaseRequest) -> None:
    """Send ``100 Continue`` if the client waits for it and its body has not all arrived."""
    if not request.content.is_eof() and expects_continue(request):
        await request.writer.write(CONTINUE)
        request.writer.output_size = 0  # the interim answer is not the response's size


async def read_body(request: web.BaseRequest) -> bytes:
    """The whole request body, after ``100 Continue`` when the client waits for it."""
    await send_continue(request)
    return await request.read()


def settle_unread_body(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Make sure a body the answer left unread is never parsed as the next request.

    Closes the connection after ``response`` when the client holds its body
    back (no ``100 Continue`` was sent) or when it is larger than
    :data:`DISCARD_LIMIT` or of unknown length; otherwise leaves the rest of
    the body to the server, which reads and discards it before the next
    request (aiohttp's lingering read) and keeps the connection.
    """
    if request.content.is_eof():  # no body, or all of it has arrived
        return
    length = request.content_length
    if length is None or length > DISCARD_LIMIT or expects_continue(request):
        response.force_close()
