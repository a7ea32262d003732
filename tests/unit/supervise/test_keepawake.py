"""KEEP_AWAKE_URL: when the request is sent, and what is said when it fails or recovers."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator

from runner.supervise.keepawake import KEEP_AWAKE_SECONDS, KeepAwake, fetch

URL = "https://example.onrender.com/healthz"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keep_awake(answers: list, said: list[str], clock: Clock) -> tuple[KeepAwake, list[str]]:
    """A KeepAwake whose requests pop ``answers`` (a status or an exception), run inline."""
    requested: list[str] = []

    def get(url: str) -> int:
        requested.append(url)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return KeepAwake(URL, said.append, clock=clock, get=get, run=lambda work: work()), requested


def test_requests_only_once_the_interval_has_passed():
    """Ticks before the interval send nothing; the first tick after it sends one request."""
    clock, said = Clock(), []
    awake, requested = keep_awake([200, 200], said, clock)
    clock.now += KEEP_AWAKE_SECONDS - 1
    awake.on_tick()
    assert requested == []
    clock.now += 1
    awake.on_tick()
    awake.on_tick()
    assert requested == [URL]
    clock.now += KEEP_AWAKE_SECONDS
    awake.on_tick()
    assert requested == [URL, URL]
    assert said == []


def test_failures_are_said_once_and_recovery_is_said_too():
    """A failing URL is reported when it starts failing and when it answers again, not more."""
    clock, said = Clock(), []
    awake, _ = keep_awake([OSError("refused"), 503, 200], said, clock)
    for _ in range(3):
        clock.now += KEEP_AWAKE_SECONDS
        awake.on_tick()
    assert said == [
        f"keep-awake: {URL} did not answer (OSError: refused); the service may fall asleep "
        "(check KEEP_AWAKE_URL)",
        f"keep-awake: {URL} answers again",
    ]


@contextlib.contextmanager
def http_server(answer: Callable[[http.server.BaseHTTPRequestHandler], int]) -> Iterator[str]:
    """A real HTTP server on a free loopback port; ``answer`` gives each GET's status."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(answer(self))
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_fetch_returns_the_status_of_a_real_http_server():
    """fetch() GETs the URL and returns its status, error statuses included."""
    with http_server(lambda request: 200 if request.path == "/healthz" else 404) as base:
        assert fetch(f"{base}/healthz", timeout=5) == 200
        assert fetch(f"{base}/missing", timeout=5) == 404


def test_a_supervisord_tick_sends_a_real_request_with_its_user_agent():
    """Through supervisor's own event bus (what RunnerSupervisor subscribes it to), a tick
    past the interval makes one real GET, from its own thread, with the runner's agent."""
    from supervisor import events

    from runner.supervise.keepawake import USER_AGENT

    seen: list[str] = []
    arrived = threading.Event()

    def answer(request) -> int:
        seen.append(request.headers["User-Agent"])
        arrived.set()
        return 200

    clock, said = Clock(), []
    with http_server(answer) as base:
        awake = KeepAwake(f"{base}/healthz", said.append, clock=clock)
        events.clear()
        events.subscribe(events.Tick60Event, awake.on_tick)
        try:
            events.notify(events.Tick60Event(0, None))  # too early: nothing sent
            clock.now += KEEP_AWAKE_SECONDS
            events.notify(events.Tick60Event(0, None))
            assert arrived.wait(10), "no request arrived"
            assert seen == [USER_AGENT] and said == []
        finally:
            events.clear()
