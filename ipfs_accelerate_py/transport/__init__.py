"""HTTP transports behind one seam (see ``base.Transport``)."""

from .base import HttpRequest, HttpResponse, StreamResponse, Transport

__all__ = ["HttpRequest", "HttpResponse", "StreamResponse", "Transport"]
