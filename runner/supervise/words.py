"""supervisord's own log messages, rewritten as the runner's words for people.

supervisord says ``exited: worker (terminated by SIGKILL; not expected)``; a user needs to
read "the worker was killed, probably out of memory". Each known message maps to a sentence
or to nothing (routine chatter); unknown messages pass through unchanged. The patterns
follow supervisor 4.3's wording (pinned in requirements.txt; tests cover each one).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from runner.supervise.exits import KINDS

_Rewrite = Callable[[re.Match[str]], str | None]

_RULES: tuple[tuple[re.Pattern[str], _Rewrite], ...] = (
    (
        re.compile(r"^spawned: '(?P<name>[\w-]+)' with pid (?P<pid>\d+)$"),
        lambda m: f"{m['name']} starting (pid {m['pid']})",
    ),
    (re.compile(r"^success: (?P<name>[\w-]+) entered RUNNING state"), lambda m: None),
    # An intended exit: runner.supervise.supervisord says its own line (the pause, why).
    (
        re.compile(
            rf"^exited: [\w-]+ \(exit status ({'|'.join(str(s) for s in sorted(KINDS))}); "
            r"(not )?expected\)$"
        ),
        lambda m: None,
    ),
    (
        re.compile(r"^exited: (?P<name>[\w-]+) \(terminated by SIGKILL; not expected\)$"),
        lambda m: (
            f"{m['name']} was killed (SIGKILL) — if nobody killed it on purpose, it probably "
            "ran out of memory: see MEMORY_BUDGET_MB and the memory plan "
            "(python -m runner plan); restarting it"
        ),
    ),
    (
        re.compile(r"^exited: (?P<name>[\w-]+) \(terminated by (?P<sig>SIG\w+); not expected\)$"),
        lambda m: f"{m['name']} was stopped by {m['sig']}; restarting it",
    ),
    (
        re.compile(r"^exited: (?P<name>[\w-]+) \(exit status (?P<status>\d+); not expected\)$"),
        lambda m: (
            f"{m['name']} exited with status {m['status']} (its last lines are above); "
            "restarting it"
        ),
    ),
    (
        re.compile(r"^exited: (?P<name>[\w-]+) \((?P<how>.*); expected\)$"),
        lambda m: f"{m['name']} exited ({m['how']}); restarting it",
    ),
    (
        re.compile(r"^gave up: (?P<name>[\w-]+) entered FATAL state"),
        lambda m: (
            f"{m['name']} could not start: it exited again and again right after "
            "starting (its lines above say why); stopping the service"
        ),
    ),
    (
        re.compile(r"^stopped: (?P<name>[\w-]+) \((?P<how>.*)\)$"),
        lambda m: f"{m['name']} stopped ({m['how']})",
    ),
    (
        re.compile(r"^received (?P<sig>SIG\w+) indicating exit request$"),
        lambda m: f"received {m['sig']}: stopping everything",
    ),
    (
        re.compile(r"^received (?P<sig>SIG\w+) indicating restart request$"),
        lambda m: f"received {m['sig']}: restarting everything",
    ),
    (
        re.compile(r"^waiting for (?P<names>.+) to die$"),
        lambda m: f"waiting for {m['names']} to finish",
    ),
    (
        re.compile(r"^killing '(?P<name>[\w-]+)' \((?P<pid>\d+)\) with SIGKILL$"),
        lambda m: f"{m['name']} did not stop within SHUTDOWN_GRACE_SECONDS; killing it",
    ),
    # Routine start-up chatter of supervisord itself.
    (
        re.compile(
            r"^(supervisord started with pid|RPC interface|Set uid|Supervisor is running "
            r"as root|Server 'unix_http_server' running without|reaped unknown pid|"
            r"Included extra file)"
        ),
        lambda m: None,
    ),
)


def explain(message: str) -> str | None:
    """The runner's sentence for a supervisord message, or None to leave it out."""
    message = message.rstrip("\n")
    for pattern, rewrite in _RULES:
        if match := pattern.search(message):
            return rewrite(match)
    return message
