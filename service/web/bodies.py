"""Request bodies that fail to read are the client's fault: a 400, not a 500 with a traceback.

The WSGI server decodes the body lazily, while a view (or the form parser, or the CSRF check) reads it, so
a malformed chunked body (a negative or garbage chunk size, a chunk without its terminator) or a body
shorter than its Content-Length raises from deep inside the read: gunicorn's ``InvalidChunkSize``,
``NoMoreData`` and friends. ``guard`` wraps ``wsgi.input`` so that any such failure surfaces as
werkzeug's ``BadRequest``, which Flask answers like every other 4xx, whichever code was reading.
"""

from __future__ import annotations

import logging

from werkzeug.exceptions import BadRequest

log = logging.getLogger(__name__)


class MalformedBody(BadRequest):
    description = "the request body could not be read (malformed framing or cut short)"


class GuardedInput:
    """``wsgi.input`` whose read failures are ``MalformedBody``."""

    def __init__(self, stream):
        self._stream = stream

    def _call(self, method: str, *args):
        try:
            return getattr(self._stream, method)(*args)
        except Exception as exc:  # any server's body decoder; the type goes to the log, the body never does
            log.info("unreadable request body: %s", type(exc).__name__)
            raise MalformedBody() from None

    def read(self, *args):
        return self._call("read", *args)

    def readline(self, *args):
        return self._call("readline", *args)

    def readlines(self, *args):
        return self._call("readlines", *args)

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def guard(wsgi_app):
    """A WSGI app that hands ``wsgi_app`` a guarded ``wsgi.input``."""

    def guarded(environ, start_response):
        if "wsgi.input" in environ:
            environ["wsgi.input"] = GuardedInput(environ["wsgi.input"])
        return wsgi_app(environ, start_response)

    return guarded
