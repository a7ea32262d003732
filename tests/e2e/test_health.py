"""The health path as Render's health check meets it: 200 for any Host header, fast, while
slow clients hold connections, and still 200 while Redis is down (a Redis blip must not get
a healthy web server restarted)."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest
import requests

from tests.support.postgres import refuse_connections, temporary_database
from tests.support.runner import start_runner, wait_http_ok
from tests.support.timeouts import START_TIMEOUT, STOP_TIMEOUT

pytestmark = pytest.mark.e2e

RENDER_HOST = "django-one-service.onrender.com"
# Requests made while Redis is down, and the most any one of them may take. Render's
# check times out after seconds; a health path that waited on Redis would take the
# client's whole connect timeout.
REQUESTS_WHILE_DOWN = 20
HEALTH_MAX_SECONDS = 1.0


def test_health_is_200_for_any_host_and_while_redis_is_down(
    runner_env, tmp_path: Path, redis_plain
):
    """/healthz answers 200 to an unknown Host and with Redis stopped (keep-awake on); Django
    still checks the Host of other pages and accepts RENDER_EXTERNAL_HOSTNAME."""
    runner_env["REDIS_URL"] = redis_plain.url()
    runner_env["RENDER_EXTERNAL_HOSTNAME"] = RENDER_HOST
    base = f"http://127.0.0.1:{runner_env['PORT']}"
    # Its first request comes after 10 minutes; here it must only not get in the way.
    runner_env["KEEP_AWAKE_URL"] = f"{base}/healthz"
    runner = start_runner(runner_env, tmp_path)
    with runner:
        wait_http_ok(f"{base}/healthz", START_TIMEOUT, runner)

        # Render's check sends the public host name; the health path answers any Host.
        for host in (RENDER_HOST, "unknown.example"):
            response = requests.get(f"{base}/healthz", headers={"Host": host}, timeout=5)
            assert (response.status_code, response.text) == (200, "ok\n")
        # Only GET and HEAD: the health path does nothing else, and says so.
        for method in ("POST", "DELETE"):
            response = requests.request(method, f"{base}/healthz", timeout=5)
            assert (response.status_code, response.headers["Allow"]) == (405, "GET, HEAD")
        assert requests.head(f"{base}/healthz", timeout=5).status_code == 200
        # Django's own pages keep their Host validation, and allow Render's host by itself.
        home = requests.get(f"{base}/", headers={"Host": RENDER_HOST}, timeout=10)
        assert home.status_code == 200
        assert (
            requests.get(f"{base}/", headers={"Host": "evil.example"}, timeout=10).status_code
            == 400
        )

        # Two clients that send one byte and wait hold no thread of the runner's web
        # (runner.web.read_ahead; tests/e2e/test_slow_clients.py has the rest).
        held = [socket.create_connection(("127.0.0.1", int(runner_env["PORT"]))) for _ in "ab"]
        for sock in held:
            sock.sendall(b"G")
        started = time.monotonic()
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        assert requests.get(f"{base}/", headers={"Host": RENDER_HOST}, timeout=5).ok
        assert time.monotonic() - started < 2 * HEALTH_MAX_SECONDS
        for sock in held:
            sock.close()

        redis_plain.stop()
        durations = []
        for _ in range(REQUESTS_WHILE_DOWN):
            started = time.monotonic()
            response = requests.get(f"{base}/healthz", headers={"Host": RENDER_HOST}, timeout=5)
            durations.append(time.monotonic() - started)
            assert response.status_code == 200
        assert max(durations) < HEALTH_MAX_SECONDS, durations

        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=STOP_TIMEOUT) == 0, runner.output()[-3000:]
    assert f"runner | keep-awake: requesting {base}/healthz every 10 minutes" in runner.output()


def test_health_is_200_while_the_database_is_down(runner_env, tmp_path: Path):
    """/healthz does not touch the database (it is answered before Django): with PostgreSQL
    refusing connections it still answers 200 at once, while a Django page fails."""
    with temporary_database("health") as database:
        runner_env |= {"DATABASE_URL": database, "RUN_WORKER": "false", "RUN_BEAT": "false"}
        base = f"http://127.0.0.1:{runner_env['PORT']}"
        runner = start_runner(runner_env, tmp_path)
        with runner:
            wait_http_ok(f"{base}/healthz", START_TIMEOUT, runner)
            assert requests.get(f"{base}/", timeout=10).status_code == 200
            refuse_connections(database)
            started = time.monotonic()
            assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
            assert time.monotonic() - started < HEALTH_MAX_SECONDS
            assert requests.get(f"{base}/", timeout=10).status_code == 500
            runner.send_signal(signal.SIGTERM)
            assert runner.wait(timeout=STOP_TIMEOUT) == 0, runner.output()[-3000:]
