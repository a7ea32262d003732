"""The health check in front of the project: GET and HEAD only, never the project."""

from __future__ import annotations

import pytest

from runner.web.health import HealthCheck


def call(path: str, method: str) -> tuple[str, dict, bytes, bool]:
    reached = []

    def project(environ, start_response):
        reached.append(True)
        start_response("200 OK", [])
        return [b"project"]

    answer: dict = {}

    def start_response(status, headers):
        answer["status"], answer["headers"] = status, dict(headers)

    body = b"".join(
        HealthCheck(project)({"PATH_INFO": path, "REQUEST_METHOD": method}, start_response)
    )
    return answer["status"], answer["headers"], body, bool(reached)


@pytest.mark.parametrize(
    ("method", "status", "body"),
    [
        ("GET", "200 OK", b"ok\n"),
        ("HEAD", "200 OK", b""),
        ("POST", "405 Method Not Allowed", b"method not allowed: GET or HEAD\n"),
        ("DELETE", "405 Method Not Allowed", b"method not allowed: GET or HEAD\n"),
    ],
)
def test_the_health_path_answers_get_and_head_only(method, status, body):
    """GET/HEAD: 200 ok; any other method: 405 with Allow; the project is never called."""
    got_status, headers, got_body, reached = call("/healthz", method)
    assert (got_status, got_body, reached) == (status, body, False)
    if status.startswith("405"):
        assert headers["Allow"] == "GET, HEAD"


def test_every_other_path_goes_to_the_project():
    """/healthz/ and / are the project's, whatever the method."""
    assert call("/", "POST")[2:] == (b"project", True)
    assert call("/healthz/", "GET")[2:] == (b"project", True)
