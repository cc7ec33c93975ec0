"""What the suite's own servers share: the operators' token the test settings carry, and a WSGI app that
is filled in after its server is bound (the app's settings need the port)."""

from __future__ import annotations

OPS_TOKEN = "test-ops-token-0123456789abcdef"


class Deferred:
    """A WSGI app filled in after the server is bound."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)
