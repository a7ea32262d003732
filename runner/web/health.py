"""The health check in front of the project's WSGI application: ``/healthz``.

``GET`` and ``HEAD`` answer ``200 ok`` at once, without Django, the database or Redis (what
Render's health check asks); any other method on that path is ``405 Method Not Allowed``
with ``Allow: GET, HEAD``, so the path cannot be mistaken for an endpoint that does
something. Every other path goes to the project's application unchanged.
"""

from __future__ import annotations

from runner.config.plan import HEALTH_PATH

HEALTH_BODY = b"ok\n"
ALLOWED_METHODS = ("GET", "HEAD")
NOT_ALLOWED_BODY = b"method not allowed: GET or HEAD\n"


class HealthCheck:
    """WSGI middleware answering ``GET``/``HEAD`` on the health path with 200, others 405."""

    def __init__(self, app, path: str = HEALTH_PATH) -> None:
        self.app = app
        self.path = path

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != self.path:
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ALLOWED_METHODS:
            start_response(
                "405 Method Not Allowed",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(NOT_ALLOWED_BODY))),
                    ("Allow", ", ".join(ALLOWED_METHODS)),
                ],
            )
            return [NOT_ALLOWED_BODY]
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(HEALTH_BODY))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [] if method == "HEAD" else [HEALTH_BODY]
