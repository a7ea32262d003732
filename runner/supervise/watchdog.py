"""The watchdog's judgement: from memory samples, decide whether to recycle, restart or wait.

Pure: dataclasses in, a ``Decision`` out (the action to take, its one log line, and the
history to keep); no psutil, no signals, no clock. The caller samples (``runner.supervise.memory``),
sends the signal or restarts the program, and logs the line.

The rules, in order:

1. While the tree's PSS stays at or under the budget minus the safety margin (the *soft
   line*, what the plan shared out), do nothing.
2. Above it, pick the component furthest over its share (used minus share, in MB) and
   recycle its biggest recyclable process gracefully (biggest by USS: what recycling it
   gives back; not one with less than RECYCLE_MIN_USS_MB of its own). Processes already
   asked to retire are not asked again. The shares add up to the soft line, so above it
   at least one component is over its share.
   A component with no process to recycle alone but a graceful stop of its own (beat; the
   worker with the threads pool: ``Limits.graceful_restart``) is restarted instead, and
   that restart counts as its recycle (same cool-down).
3. Above the *last-resort line* (closer to the OOM line), restart that component's whole
   program; if a last-resort restart is backing off, fall back to rule 2. Graceful
   restarts (rule 2) do not delay it. A threads-pool worker is not stopped gracefully
   there, which would wait for the very task that holds the memory: it is *replaced*, sent
   ``EMERGENCY_SIGNAL``, on which it gives back what it holds and exits at once
   (``runner.worker.memory_emergency``, which also keeps such a task from running a third
   time), on a cool-down of its own (10 s, doubling). A prefork worker loses only the child
   that holds the memory, SIGKILLed: Celery requeues or fails its task, and the worker's
   main process keeps it from running a third time the same way.
4. Never a loop: after acting on a component, each further action of the same kind on it
   waits a cool-down that doubles with every action in the last half hour (30 s, 60 s, ...
   for recycles; 2 min, 4 min, ... for last-resort restarts; at most 15 and 30 min). While
   waiting, one line says so, once per cool-down.

How one process is recycled gracefully (read in the sources of the pinned versions):

- **Gunicorn worker: SIGTERM to the worker.** ``gunicorn/workers/base.py`` maps SIGTERM to
  ``handle_exit`` (``alive = False``) and calls ``siginterrupt(SIGTERM, False)`` so the
  request in progress is not interrupted; the sync worker checks ``alive`` only between
  requests (``workers/sync.py``), the gthread worker stops accepting and finishes its
  connections within the graceful timeout. The arbiter reaps it (``reap_workers`` logs
  SIGTERM as expected) and ``manage_workers`` forks a replacement from the preloaded
  master, as after ``max_requests``. SIGQUIT and SIGINT are ``handle_quit``: exit at once,
  failing the request in flight. SIGTTOU to the master retires the *oldest* worker, not
  the big one, and lowers the worker count.
- **Celery prefork child: SIGURG to the child** (``runner.worker.hooks.RETIRE_SIGNAL``).
  The hook in each child sets the child's billiard sentinel event (the one
  ``pool_restart`` uses; it exists when ``worker_pool_restarts`` is on), which billiard's
  worker loop checks before taking each job (``Worker._make_protected_receive``): the
  child finishes its task, reports the result, exits with EX_OK, and the pool forks a
  replacement (``maintain_pool``); an idle child exits at once (``runner.worker.hooks.
  retire_on_signal``). Nothing is run twice. SIGTERM, by contrast, raises
  SystemExit *inside* the running task (``billiard.common._shutdown_cleanup``): with
  ``acks_late`` and ``reject_on_worker_lost`` the task goes back to the queue and runs
  again from the start -- not lost, but repeated, so that is the hard path. Remote
  control was ruled out: ``pool_restart`` restarts every child, ``revoke(terminate=True)``
  discards the task, and a broadcast would need Celery, kombu and a broker connection
  inside supervisord's process.
  Children are told from the embedded beat by the names the hooks give them; without the
  hooks no Celery child is recycled (and SIGURG, ignored by default, would do nothing).
- **Separate beat, and a worker with the threads pool: restart the program.** Beat holds no
  work in flight (its schedule is in the database); a threads-pool worker has no child to
  recycle, and its stop is Celery's warm shutdown (running tasks finish, bounded by the
  runner's grace, then go back to the queue). ``Limits.graceful_restart`` lists these.
- Gunicorn master, Celery main process, embedded beat: nothing to recycle alone; only
  the last-resort restart of the program applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from runner.config.budget import Budget
from runner.config.plan import CELERY_BEAT_NAME, CELERY_CHILD_NAME

MB = 1024 * 1024

# Roles of processes within a component.
GUNICORN_MASTER = "gunicorn-master"
GUNICORN_WORKER = "gunicorn-worker"
CELERY_MAIN = "celery-main"
CELERY_CHILD = "celery-child"
BEAT = "beat"
OTHER = "other"  # e.g. a subprocess a request started: counted, never signalled


# How each recyclable role is retired gracefully: the signal sent to that process, and
# what it finishes first. Roles not listed have no graceful way out of their own.
GRACEFUL_SIGNALS = {GUNICORN_WORKER: "SIGTERM", CELERY_CHILD: "SIGURG"}
FINISHES = {GUNICORN_WORKER: "its current request", CELERY_CHILD: "its current task"}
# Recycling a process gives back its private memory (USS). Measured with the demo project
# (bench/process_costs.py): a fresh Gunicorn sync worker holds 3-5 MB of its own, 26 MB
# after serving a few pages (copy-on-write un-shares what it touches); a prefork child 11
# MB fresh, 17 MB after a few ORM tasks. A process below this line is doing its normal
# work: recycling it would give back little and churn.
RECYCLE_MIN_USS_MB = 32.0
# What a threads-pool worker's main process gets over the last-resort line: SIGURG, which
# it handles (runner.worker.memory_emergency) and which is otherwise ignored by default.
EMERGENCY_SIGNAL = "SIGURG"
REPLACE_COOLDOWN_SECONDS = 10.0
MAX_REPLACE_COOLDOWN_SECONDS = 60.0
# Components whose whole program restart is graceful, by default: beat holds no work in
# flight. The plan adds the worker when it uses the threads pool (no child to recycle; a
# restart is Celery's warm shutdown: running tasks finish, or go back to the queue).
GRACEFUL_RESTART = frozenset({"beat"})

# Action kinds, as kept in the history.
RECYCLE = "recycle"  # one process retires after its request/task; its parent replaces it
RESTART = "restart"  # supervisord stops and starts the whole program
REPLACE = "replace"  # a threads-pool worker over the last-resort line exits now, tasks given back
WAIT = "wait"  # a line already said that we are backing off or waiting: say it once

# Cool-downs (seconds). Recycling is cheap and graceful: start short. A restart interrupts
# a component for seconds: start longer. Both double per action within BACKOFF_WINDOW.
RECYCLE_COOLDOWN_SECONDS = 30.0
RESTART_COOLDOWN_SECONDS = 120.0
MAX_RECYCLE_COOLDOWN_SECONDS = 15 * 60.0
MAX_RESTART_COOLDOWN_SECONDS = 30 * 60.0
BACKOFF_WINDOW_SECONDS = 30 * 60.0
# The periodic "use vs share" line: rare enough not to drown the application's logs.
REPORT_INTERVAL_SECONDS = 10 * 60.0


class MemoryLike(Protocol):
    """What the watchdog needs of a sampled process (runner.supervise.memory.ProcessMemory has
    it)."""

    pid: int
    ppid: int
    name: str
    pss: int
    uss: int


@dataclass(frozen=True)
class ProcessSample:
    """One process of a component: its role and memory, in MB."""

    pid: int
    role: str
    pss_mb: float
    uss_mb: float


@dataclass(frozen=True)
class ComponentSample:
    """All processes of one component (supervisord program), and its program's PID."""

    component: str  # "web", "worker", "beat"
    program_pid: int
    processes: tuple[ProcessSample, ...]

    @property
    def used_mb(self) -> float:
        return sum(p.pss_mb for p in self.processes)


@dataclass(frozen=True)
class Limits:
    """Lines in the tree's total PSS and each component's share, all in MB."""

    budget_mb: int  # the OOM line
    soft_mb: int  # above: recycle gracefully (the budget minus the safety margin)
    last_resort_mb: int  # above: restart a program
    shares_mb: Mapping[str, int]
    graceful_restart: frozenset[str] = GRACEFUL_RESTART

    def share(self, component: str) -> int:
        return self.shares_mb.get(component, 0)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready, for handing the limits from the launcher to supervisord's process."""
        return {
            "budget_mb": self.budget_mb,
            "soft_mb": self.soft_mb,
            "last_resort_mb": self.last_resort_mb,
            "shares_mb": dict(self.shares_mb),
            "graceful_restart": sorted(self.graceful_restart),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Limits:
        """The inverse of as_dict."""
        return cls(
            int(data["budget_mb"]),
            int(data["soft_mb"]),
            int(data["last_resort_mb"]),
            {str(k): int(v) for k, v in dict(data["shares_mb"]).items()},
            frozenset(str(name) for name in data["graceful_restart"]),
        )

    @classmethod
    def from_budget(
        cls,
        budget: Budget,
        shares_mb: Mapping[str, int],
        graceful_restart: frozenset[str] = GRACEFUL_RESTART,
    ) -> Limits:
        """The lines of ``budget`` (see runner.config.budget's margins) with the plan's shares."""
        return cls(
            budget.total_mb,
            budget.usable_mb,
            budget.last_resort_mb,
            dict(shares_mb),
            graceful_restart,
        )


@dataclass(frozen=True)
class Action:
    """Something the caller must do now."""

    kind: str  # RECYCLE or RESTART
    component: str
    pid: int  # the process to signal (RECYCLE) or the program's PID (RESTART)
    # RECYCLE: the signal for that process; RESTART: None (supervisord stops and starts
    # the program) or the signal on which the program exits at once (a REPLACE).
    signal: str | None


@dataclass(frozen=True)
class Record:
    """One past action or notice, for cool-downs and for saying things once."""

    kind: str  # RECYCLE, RESTART or WAIT
    component: str
    pid: int | None
    at: float  # the caller's monotonic clock, seconds


@dataclass(frozen=True)
class Decision:
    """What to do (maybe nothing), the one line to log (maybe none), the history to keep."""

    action: Action | None
    line: str | None
    history: tuple[Record, ...]


# --- Roles ----------------------------------------------------------------------------------
def component_sample(
    component: str, program_pid: int, processes: Iterable[MemoryLike]
) -> ComponentSample:
    """Give each process of a program's tree its role, from the tree's shape and names."""
    found = list(processes)
    samples = []
    for process in found:
        if process.pid == program_pid:
            role = {"web": GUNICORN_MASTER, "worker": CELERY_MAIN, "beat": BEAT}.get(
                component, OTHER
            )
        elif process.ppid != program_pid:
            role = OTHER
        elif component == "web":
            role = GUNICORN_WORKER
        elif component == "worker" and process.name == CELERY_CHILD_NAME:
            role = CELERY_CHILD
        elif component == "worker" and process.name == CELERY_BEAT_NAME:
            role = BEAT
        else:
            role = OTHER
        samples.append(ProcessSample(process.pid, role, process.pss / MB, process.uss / MB))
    return ComponentSample(component, program_pid, tuple(samples))


# --- Cool-downs -----------------------------------------------------------------------------
def cooldown_seconds(kind: str, recent_actions: int) -> float:
    """How long after the last of ``recent_actions`` (>= 1) actions another may follow."""
    if kind == RESTART:
        base, ceiling = RESTART_COOLDOWN_SECONDS, MAX_RESTART_COOLDOWN_SECONDS
    elif kind == REPLACE:
        base, ceiling = REPLACE_COOLDOWN_SECONDS, MAX_REPLACE_COOLDOWN_SECONDS
    else:
        base, ceiling = RECYCLE_COOLDOWN_SECONDS, MAX_RECYCLE_COOLDOWN_SECONDS
    return min(base * 2 ** max(recent_actions - 1, 0), ceiling)


def _blocked_for(history: Sequence[Record], kind: str, component: str, now: float) -> float:
    """Seconds until ``kind`` may act on ``component`` again (0: now)."""
    mine = [r for r in history if r.kind == kind and r.component == component]
    if not mine:
        return 0.0
    last = max(r.at for r in mine)
    return max(0.0, last + cooldown_seconds(kind, len(mine)) - now)


def _said_since_last_action(history: Sequence[Record], component: str) -> bool:
    """Whether a WAIT line was logged for ``component`` since its last action."""
    actions = [r.at for r in history if r.component == component and r.kind != WAIT]
    last_action = max(actions, default=float("-inf"))
    return any(r.kind == WAIT and r.component == component and r.at >= last_action for r in history)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# --- The decision ---------------------------------------------------------------------------
def _mb(value: float) -> str:
    return f"{value:.0f} MB"


def _furthest_over_share(limits: Limits, samples: Sequence[ComponentSample]) -> ComponentSample:
    return max(samples, key=lambda c: (c.used_mb - limits.share(c.component), c.used_mb))


def _recyclable(
    component: ComponentSample, history: Sequence[Record]
) -> tuple[list[ProcessSample], list[ProcessSample]]:
    """(candidates biggest first, those already asked to retire and still there)."""
    asked = {r.pid for r in history if r.kind == RECYCLE and r.component == component.component}
    own = [p for p in component.processes if p.role in GRACEFUL_SIGNALS]
    pending = [p for p in own if p.pid in asked]
    candidates = sorted(
        (p for p in own if p.pid not in asked and p.uss_mb >= RECYCLE_MIN_USS_MB),
        key=lambda p: (p.uss_mb, p.pss_mb),
        reverse=True,
    )
    return candidates, pending


def _situation(limits: Limits, component: ComponentSample, total: float, line: str) -> str:
    share = limits.share(component.component)
    return (
        f"{component.component} {_mb(component.used_mb)}, share {_mb(share)}; "
        f"tree {total:.0f}/{limits.budget_mb} MB, over the {line}"
    )


def decide(
    limits: Limits, samples: Sequence[ComponentSample], history: Sequence[Record], now: float
) -> Decision:
    """The action (or none) for the latest samples, given what was done recently."""
    kept = tuple(r for r in history if now - r.at < BACKOFF_WINDOW_SECONDS)
    total = sum(c.used_mb for c in samples)
    if total <= limits.soft_mb or not samples:
        return Decision(None, None, kept)

    target = _furthest_over_share(limits, samples)
    name = target.component
    hard = total > limits.last_resort_mb
    line_name = (
        f"last-resort line {limits.last_resort_mb} MB" if hard else f"soft line {limits.soft_mb} MB"
    )
    situation = _situation(limits, target, total, line_name)

    def act(action: Action, line: str, kind: str | None = None) -> Decision:
        record = Record(kind or action.kind, name, action.pid, now)
        return Decision(action, line, (*kept, record))

    def wait(line: str) -> Decision:
        if _said_since_last_action(kept, name):
            return Decision(None, None, kept)
        return Decision(None, line, (*kept, Record(WAIT, name, None, now)))

    # Last-resort restarts have a history of their own: a graceful restart at the soft line
    # must not hold back the one step left before the OOM line (seen: a threads-pool worker
    # restarted gracefully, leaking again, waited out the restart cool-down past the budget).
    graceful = name in limits.graceful_restart
    children = [p for p in target.processes if p.role == CELERY_CHILD]
    if hard and name == "worker" and not graceful and children:
        if _blocked_for(kept, REPLACE, name, now) == 0:
            biggest = max(children, key=lambda p: (p.uss_mb, p.pss_mb))
            line = (
                f"{name} child {biggest.pid} uses {_mb(biggest.pss_mb)}; {situation}: "
                "killing it (SIGKILL) without waiting for its task, which Celery requeues or "
                "fails (not run a third time); the last step before the OOM line"
            )
            return act(Action(RESTART, name, biggest.pid, "SIGKILL"), line, REPLACE)
    if hard and name == "worker" and graceful:
        replace_wait = _blocked_for(kept, REPLACE, name, now)
        if replace_wait == 0:
            line = (
                f"{situation}: replacing {name} (pid {target.program_pid}) now, its tasks "
                "given back (a graceful stop would wait for the task holding the memory); "
                "the last step before the OOM line"
            )
            action = Action(RESTART, name, target.program_pid, EMERGENCY_SIGNAL)
            return act(action, line, REPLACE)
    restart_wait = _blocked_for(kept, RESTART, name, now)
    replacing = name == "worker" and (graceful or children)
    if hard and restart_wait == 0 and not replacing:
        line = (
            f"{situation}: restarting {name} (pid {target.program_pid}), the last step "
            "before the OOM line"
        )
        return act(Action(RESTART, name, target.program_pid, None), line)

    recycle_wait = _blocked_for(kept, RECYCLE, name, now)
    if graceful and recycle_wait == 0:
        # The component's way to give memory back (no child to recycle): the program's
        # graceful stop, on the recycling cadence.
        line = (
            f"{situation}: restarting {name} (pid {target.program_pid}), it stops taking "
            "work and finishes what it has first"
        )
        return act(Action(RESTART, name, target.program_pid, None), line, RECYCLE)

    candidates, pending = _recyclable(target, kept)
    if candidates and recycle_wait == 0:
        chosen = candidates[0]
        noun = "worker" if chosen.role == GUNICORN_WORKER else "child"
        line = (
            f"{name} {noun} {chosen.pid} uses {_mb(chosen.pss_mb)}; {situation}: "
            f"recycling the {noun} after {FINISHES[chosen.role]}"
        )
        signal = GRACEFUL_SIGNALS[chosen.role]
        return act(Action(RECYCLE, name, chosen.pid, signal), line)

    if pending and not candidates:
        pids = ", ".join(str(p.pid) for p in pending)
        return wait(f"{situation}: waiting for {pids} to finish and exit as asked")
    blocked = [(restart_wait, RESTART)] if hard else []
    if candidates or graceful:
        blocked.append((recycle_wait, RECYCLE))
    if not blocked:
        return wait(
            f"{situation}: no process of {name} can be recycled alone with more than "
            f"{RECYCLE_MIN_USS_MB:.0f} MB of its own to give back; {name} is restarted "
            f"only above the last-resort line {limits.last_resort_mb} MB"
        )
    seconds, kind = min(blocked)
    count = sum(1 for r in kept if r.kind == kind and r.component == name)
    return wait(
        f"{situation}: backing off, {name} had its {_ordinal(count)} {kind} in "
        f"{BACKOFF_WINDOW_SECONDS / 60:.0f} min; next possible in {seconds:.0f} s"
    )


# --- The periodic report --------------------------------------------------------------------
def report_due(last_report_at: float | None, now: float) -> bool:
    """Whether the periodic use-vs-share line is due."""
    return last_report_at is None or now - last_report_at >= REPORT_INTERVAL_SECONDS


def report_line(limits: Limits, samples: Sequence[ComponentSample]) -> str:
    """Use of each component against its share, and the tree against the lines."""
    parts = [
        f"{c.component} {c.used_mb:.0f}/{limits.share(c.component)} MB ({len(c.processes)} proc)"
        for c in samples
    ]
    total = sum(c.used_mb for c in samples)
    return (
        f"memory: {', '.join(parts) or 'nothing running'}; tree {total:.0f}/"
        f"{limits.budget_mb} MB (recycling above {limits.soft_mb}, restart above "
        f"{limits.last_resort_mb})"
    )
