"""``KEEP_AWAKE_URL``: an optional request to the service's own public URL every 10 minutes.

Render's free web service sleeps after 15 minutes without inbound traffic, and while it
sleeps the worker and beat sleep with it: periodic tasks do not run. A request to the
service's **public** URL goes out through Render's proxy and comes back in as inbound
traffic, so the instance stays awake (a request to localhost would not count).

The honest price: an instance that never sleeps uses about 24 h x 31 days = 744 of the 750
free instance hours a workspace gets each month, so only one such service fits; a second
would run out of hours and be suspended until the month ends. Off unless the variable is
set.

The request is sent from supervisord's own loop (its 60-second tick events), in a
short-lived thread so that a slow answer never blocks supervision: no extra process, no
extra memory, and it runs exactly as long as the service does.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from runner.config.settings import KEEP_AWAKE_MINUTES

KEEP_AWAKE_SECONDS = KEEP_AWAKE_MINUTES * 60
# The whole request, connection included; far below the interval.
REQUEST_TIMEOUT_SECONDS = 30
USER_AGENT = "django-one-service-runner keep-awake"


def fetch(url: str, timeout: float = REQUEST_TIMEOUT_SECONDS) -> int:
    """GET ``url`` and return the HTTP status (an HTTP error status is returned, not raised)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _in_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="keep-awake", daemon=True).start()


class KeepAwake:
    """Requests ``url`` when ``every_seconds`` have passed since the last request (or start)."""

    def __init__(
        self,
        url: str,
        say: Callable[[str], None],
        every_seconds: float = KEEP_AWAKE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        get: Callable[[str], int] = fetch,
        run: Callable[[Callable[[], None]], None] = _in_thread,
    ) -> None:
        self.url = url
        self.say = say
        self.every_seconds = every_seconds
        self.clock = clock
        self.get = get
        self.run = run
        self.last = clock()
        self.failing = False

    def on_tick(self, _event: object = None) -> None:
        """Called on every supervisord tick; sends the request when it is time."""
        now = self.clock()
        if now - self.last < self.every_seconds:
            return
        self.last = now
        self.run(self.ping)

    def ping(self) -> None:
        try:
            status = self.get(self.url)
            problem = None if status < 400 else f"answered HTTP {status}"
        except (OSError, ValueError) as error:
            problem = f"did not answer ({error.__class__.__name__}: {error})"
        # One line when it starts failing and one when it recovers, not one every time.
        if problem and not self.failing:
            self.say(
                f"keep-awake: {self.url} {problem}; the service may fall asleep "
                "(check KEEP_AWAKE_URL)"
            )
        elif not problem and self.failing:
            self.say(f"keep-awake: {self.url} answers again")
        self.failing = problem is not None
