"""A WSGI application for the web-server tests: it answers with what it read of the request."""

import hashlib
import json


def app(environ, start_response):
    """Read the whole body (chunked or of known length) and describe it in JSON."""
    body = environ["wsgi.input"].read()
    answer = json.dumps(
        {
            "method": environ["REQUEST_METHOD"],
            "path": environ["PATH_INFO"],
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
    )
    return [answer]
