"""The judgement of a program's exit: intent or failure, and how soon to start it again.

Pure: an exit status and the recent history in, a ``Verdict`` out; no supervisor, no clock.
``runner.supervise.supervisord`` applies it to supervisord's process state.

supervisord counts any exit within ``startsecs`` of a start as a failed start, and after
``startretries`` of them gives up, which stops the service. That is right for a program that
cannot start (a bad import, a port taken) and wrong for exits the runner asks for: a worker
that restarts itself after CELERY_MAX_TASKS_PER_CHILD tasks of a burst, or after a task kept
too much memory, is back in a tenth of a second and may well exit again within seconds. The
programs say why they exit with a status of their own (``runner.errors``):

- ``EXIT_PLANNED_RESTART``: started again at once, never counted;
- ``EXIT_MEMORY_RESTART``: never counted; started again at once the first times, then after a
  pause that doubles with each such exit in the last ``WINDOW_SECONDS``, so a task that leaks
  on every run cannot turn the worker into a restart loop;
- ``EXIT_BROKER_UNAVAILABLE`` (Redis full, out of connections, refusing the password, gone):
  never counted, started again after a pause that doubles likewise: the web keeps serving
  while Redis is away, and the worker comes back on its own when Redis does;
- anything else: supervisord's own judgement (a failed start if it came too soon; three stop
  the service).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runner.errors import EXIT_BROKER_UNAVAILABLE, EXIT_MEMORY_RESTART, EXIT_PLANNED_RESTART

WINDOW_SECONDS = 10 * 60.0  # paused exits older than this no longer lengthen the pause
MAX_PAUSE_SECONDS = 60.0
# Memory restarts: this many in the window come back at once (a burst of ordinary leaks
# each gives its memory back and goes on); from the next one, pauses of 5, 10, 20 s ...
MEMORY_FREE_RESTARTS = 2
MEMORY_FIRST_PAUSE_SECONDS = 5.0
# Redis unavailable: 2, 4, 8 ... s; Redis answers again within a pause of coming back.
BROKER_FIRST_PAUSE_SECONDS = 2.0

# The start of a paused program's spawnerr, by which the status page says "restarting".
PAUSED = "paused by the runner"

PLANNED = "planned"
MEMORY = "memory"
BROKER = "broker"
KINDS = {
    EXIT_PLANNED_RESTART: PLANNED,
    EXIT_MEMORY_RESTART: MEMORY,
    EXIT_BROKER_UNAVAILABLE: BROKER,
}


@dataclass(frozen=True)
class PastExit:
    """One intended exit of a program, kept for the pauses."""

    program: str
    kind: str
    at: float  # the caller's clock, seconds


@dataclass(frozen=True)
class Verdict:
    """Whether supervisord may count the exit as a failed start, and if not, the pause
    before the next start and the runner's line (None: supervisord's own words)."""

    intended: bool
    pause_seconds: float
    line: str | None
    history: tuple[PastExit, ...]


def _doubling(first: float, count: int) -> float:
    return min(first * 2 ** max(count - 1, 0), MAX_PAUSE_SECONDS)


def pause_for(kind: str, earlier: int) -> float:
    """Seconds before the next start, after ``earlier`` exits of ``kind`` in the window."""
    if kind == MEMORY:
        over = earlier + 1 - MEMORY_FREE_RESTARTS
        return 0.0 if over <= 0 else _doubling(MEMORY_FIRST_PAUSE_SECONDS, over)
    if kind == BROKER:
        return _doubling(BROKER_FIRST_PAUSE_SECONDS, earlier + 1)
    return 0.0


def _line(program: str, kind: str, pause: float, count: int) -> str:
    when = "at once" if pause == 0 else f"in {pause:.0f} s"
    if kind == PLANNED:
        return (
            f"{program} restarted itself as planned (its line above says why); starting it {when}"
        )
    if kind == MEMORY:
        return (
            f"{program} restarted itself to give back the memory its tasks kept ({count} in "
            f"{WINDOW_SECONDS / 60:.0f} min; its line above names the task); starting it {when}"
        )
    return (
        f"{program} cannot work while Redis cannot be used (its line above says why; "
        f"{count} in {WINDOW_SECONDS / 60:.0f} min); the web keeps serving; starting it {when}"
    )


def judge(program: str, status: int | None, history: Sequence[PastExit], now: float) -> Verdict:
    """The verdict on ``program`` exiting with ``status`` (None: killed by a signal)."""
    kept = tuple(e for e in history if now - e.at < WINDOW_SECONDS)
    kind = KINDS.get(status) if status is not None else None
    if kind is None:
        return Verdict(False, 0.0, None, kept)
    earlier = sum(1 for e in kept if e.program == program and e.kind == kind)
    pause = pause_for(kind, earlier)
    return Verdict(
        True, pause, _line(program, kind, pause, earlier + 1), (*kept, PastExit(program, kind, now))
    )
