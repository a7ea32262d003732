"""Table-driven tests of the watchdog's decisions: when to recycle, restart, wait or back off."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from runner.config.budget import resolve_budget
from runner.supervise.watchdog import (
    BEAT,
    CELERY_BEAT_NAME,
    CELERY_CHILD,
    CELERY_CHILD_NAME,
    CELERY_MAIN,
    EMERGENCY_SIGNAL,
    GUNICORN_MASTER,
    GUNICORN_WORKER,
    MB,
    OTHER,
    RECYCLE,
    REPLACE,
    RESTART,
    WAIT,
    Action,
    ComponentSample,
    Decision,
    Limits,
    ProcessSample,
    Record,
    component_sample,
    cooldown_seconds,
    decide,
    report_due,
    report_line,
)

SHARES = {"web": 150, "worker": 250, "beat": 60}
LIMITS = Limits(budget_mb=512, soft_mb=460, last_resort_mb=491, shares_mb=SHARES)
NOW = 10_000.0

WEB_PID, WORKER_PID, BEAT_PID = 100, 200, 300


def web(*workers: float, master: float = 50) -> ComponentSample:
    """Gunicorn: a master and workers (PSS = USS, for simple arithmetic)."""
    processes = [ProcessSample(WEB_PID, GUNICORN_MASTER, master, master)]
    processes += [
        ProcessSample(WEB_PID + 1 + i, GUNICORN_WORKER, mb, mb) for i, mb in enumerate(workers)
    ]
    return ComponentSample("web", WEB_PID, tuple(processes))


def worker(*children: float, main: float = 60, beat: float | None = 16) -> ComponentSample:
    """Celery: a main process, pool children, maybe an embedded beat."""
    processes = [ProcessSample(WORKER_PID, CELERY_MAIN, main, main)]
    processes += [
        ProcessSample(WORKER_PID + 1 + i, CELERY_CHILD, mb, mb) for i, mb in enumerate(children)
    ]
    if beat is not None:
        processes.append(ProcessSample(WORKER_PID + 50, BEAT, beat, beat))
    return ComponentSample("worker", WORKER_PID, tuple(processes))


def beat(mb: float) -> ComponentSample:
    return ComponentSample("beat", BEAT_PID, (ProcessSample(BEAT_PID, BEAT, mb, mb),))


def recycled(component: str, pid: int, at: float) -> Record:
    return Record(RECYCLE, component, pid, at)


def restarted(component: str, pid: int, at: float) -> Record:
    return Record(RESTART, component, pid, at)


@pytest.mark.parametrize(
    ("samples", "history", "action"),
    [
        # Under the soft line: nothing, whatever the shares say.
        ((web(200, 20), worker(15, 15)), (), None),
        # A leaking Celery child: the worker is furthest over its share; its biggest child.
        ((web(20, 20), worker(15, 290)), (), Action(RECYCLE, "worker", 202, "SIGURG")),
        # A leaking Gunicorn worker: SIGTERM to that worker only.
        ((web(20, 270), worker(15, 15, main=80)), (), Action(RECYCLE, "web", 102, "SIGTERM")),
        # Both over their shares: the one further over is chosen (worker +71 vs web +1).
        ((web(50, 51), worker(15, 230)), (), Action(RECYCLE, "worker", 202, "SIGURG")),
        # Past the last-resort line, prefork: the child holding the memory, SIGKILLed.
        ((web(20, 20), worker(15, 330)), (), Action(RESTART, "worker", 202, "SIGKILL")),
        # Past the last-resort line, that backing off: a graceful recycle meanwhile.
        (
            (web(20, 20), worker(15, 330)),
            (Record(REPLACE, "worker", 202, NOW - 5),),
            Action(RECYCLE, "worker", 202, "SIGURG"),
        ),
        # Past the last-resort line with no child to kill: the whole program.
        (
            (web(20, 20), worker(main=421, beat=16)),
            (),
            Action(RESTART, "worker", WORKER_PID, None),
        ),
        # A separate beat over its share restarts gracefully (it holds no work in flight).
        (
            (web(20, 20), worker(15, 185, beat=None), beat(130)),
            (),
            Action(RESTART, "beat", BEAT_PID, None),
        ),
        # The child already asked to retire is not asked again; the next big one is.
        (
            (web(20, 20), worker(150, 160)),
            (recycled("worker", 202, NOW - 40),),
            Action(RECYCLE, "worker", 201, "SIGURG"),
        ),
        # Recycles older than the back-off window are forgotten: the base cool-down applies.
        (
            (web(20, 20), worker(15, 290)),
            tuple(recycled("worker", 900 + i, NOW - 1900 - i) for i in range(5)),
            Action(RECYCLE, "worker", 202, "SIGURG"),
        ),
    ],
)
def test_decide_chooses_the_action(samples, history, action):
    """decide() picks the component furthest over its share and the gentlest action that helps."""
    assert decide(LIMITS, samples, history, NOW).action == action


@pytest.mark.parametrize(
    ("samples", "history", "line"),
    [
        (
            (web(20, 20), worker(15, 290)),
            (),
            "worker child 202 uses 290 MB; worker 381 MB, share 250 MB; tree 471/512 MB, over "
            "the soft line 460 MB: recycling the child after its current task",
        ),
        (
            (web(20, 270), worker(15, 15, main=80)),
            (),
            "web worker 102 uses 270 MB; web 340 MB, share 150 MB; tree 466/512 MB, over the "
            "soft line 460 MB: recycling the worker after its current request",
        ),
        (
            (web(20, 20), worker(15, 330)),
            (),
            "worker child 202 uses 330 MB; worker 421 MB, share 250 MB; tree 511/512 MB, over "
            "the last-resort line 491 MB: killing it (SIGKILL) without waiting for its task, "
            "which Celery requeues or fails (not run a third time); the last step before the "
            "OOM line",
        ),
        (
            (web(20, 20), worker(15, 290)),
            (recycled("worker", 201, NOW - 10),),
            "worker 381 MB, share 250 MB; tree 471/512 MB, over the soft line 460 MB: backing "
            "off, worker had its 1st recycle in 30 min; next possible in 20 s",
        ),
        (
            (web(20, 20), worker(15, 290)),
            (recycled("worker", 202, NOW - 100),),
            "worker 381 MB, share 250 MB; tree 471/512 MB, over the soft line 460 MB: waiting "
            "for 202 to finish and exit as asked",
        ),
        (
            (web(20, 20), worker(15, 15, beat=290)),
            (),
            "worker 380 MB, share 250 MB; tree 470/512 MB, over the soft line 460 MB: no "
            "process of worker can be recycled alone with more than 32 MB of its own to give "
            "back; worker is restarted only above the last-resort line 491 MB",
        ),
    ],
)
def test_each_decision_says_who_how_much_and_why(samples, history, line):
    """Every decision is one line naming the process, its use, the share, the tree and why."""
    assert decide(LIMITS, samples, history, NOW).line == line


def test_tree_below_soft_line_means_nothing_and_prunes_history():
    """Under the soft line nothing is done or said, and records older than the window go."""
    old, recent = recycled("worker", 1, NOW - 1801), recycled("worker", 2, NOW - 5)
    assert decide(LIMITS, (web(20, 20), worker(15, 15)), (old, recent), NOW) == Decision(
        None, None, (recent,)
    )


def test_a_recycle_is_recorded_for_the_cooldown():
    """The history returned after an action holds that action, so the next tick backs off."""
    decision = decide(LIMITS, (web(20, 20), worker(15, 290)), (), NOW)
    assert decision.history == (recycled("worker", 202, NOW),)


def test_backing_off_is_said_once_per_cooldown():
    """The backing-off line is logged once, then nothing until the next action."""
    samples = (web(20, 20), worker(15, 150, 140))
    first = decide(LIMITS, samples, (recycled("worker", 202, NOW - 10),), NOW)
    assert first.action is None and first.line is not None
    assert first.history[-1] == Record(WAIT, "worker", None, NOW)
    second = decide(LIMITS, samples, first.history, NOW + 5)
    assert (second.action, second.line) == (None, None)


def test_backoff_doubles_with_each_recent_recycle():
    """Three recycles in the window: the fourth waits 120 s after the third, not 30 s."""
    samples = (web(20, 20), worker(15, 150, 140))
    history = (
        recycled("worker", 901, NOW),
        recycled("worker", 902, NOW + 30),
        recycled("worker", 903, NOW + 90),
    )
    assert decide(LIMITS, samples, history, NOW + 209).action is None
    assert decide(LIMITS, samples, history, NOW + 210).action == Action(
        RECYCLE, "worker", 202, "SIGURG"
    )


def test_small_processes_are_not_worth_recycling():
    """A child with less than RECYCLE_MIN_USS_MB of its own is left alone (no churn)."""
    samples = (web(20, 20), worker(31, 31, main=316, beat=None))
    decision = decide(LIMITS, samples, (), NOW)
    assert decision.action is None and "no process of worker" in (decision.line or "")


def test_threads_pool_worker_restarts_gracefully_at_the_soft_line():
    """A worker listed in graceful_restart (threads pool) is restarted, not left waiting."""
    limits = Limits(512, 460, 491, SHARES, frozenset({"beat", "worker"}))
    samples = (web(20, 20), worker(main=380, beat=16))
    assert decide(limits, samples, (), NOW).action == Action(RESTART, "worker", WORKER_PID, None)


def test_a_graceful_restart_is_on_the_recycling_cadence():
    """A threads-pool worker's graceful restart is its way to recycle: recorded as a
    recycle, so the next one may follow after the recycle cool-down (30 s), not 120 s."""
    limits = Limits(512, 460, 491, SHARES, frozenset({"beat", "worker"}))
    samples = (web(20, 20), worker(main=380, beat=16))
    first = decide(limits, samples, (), NOW)
    assert first.history[-1].kind == RECYCLE
    waiting = decide(limits, samples, first.history, NOW + 29)
    assert waiting.action is None and "backing off" in (waiting.line or "")
    again = decide(limits, samples, first.history, NOW + 31)
    assert again.action == Action(RESTART, "worker", WORKER_PID, None)


def test_a_graceful_restart_does_not_hold_back_the_last_resort():
    """Over the last-resort line a threads-pool worker is replaced even right after a
    graceful restart, by the signal on which it exits at once: a graceful stop would wait
    for the task holding the memory."""
    limits = Limits(512, 460, 491, SHARES, frozenset({"beat", "worker"}))
    history = (recycled("worker", WORKER_PID, NOW - 5),)
    samples = (web(20, 20), worker(main=420, beat=16))
    decision = decide(limits, samples, history, NOW)
    assert decision.action == Action(RESTART, "worker", WORKER_PID, EMERGENCY_SIGNAL)
    assert "replacing worker" in (decision.line or "")
    assert "the last step before the OOM line" in (decision.line or "")
    assert decision.history[-1].kind == REPLACE


def test_a_replaced_worker_may_be_replaced_again_ten_seconds_later():
    """A task that holds the memory comes back once (runner.worker.memory_emergency keeps it
    from a third run): the next replacement waits 10 s, not a restart's 2 minutes."""
    limits = Limits(512, 460, 491, SHARES, frozenset({"beat", "worker"}))
    samples = (web(20, 20), worker(main=420, beat=16))
    first = decide(limits, samples, (), NOW)
    assert first.action == Action(RESTART, "worker", WORKER_PID, EMERGENCY_SIGNAL)
    assert decide(limits, samples, first.history, NOW + 9).action != first.action
    assert decide(limits, samples, first.history, NOW + 11).action == first.action


@pytest.mark.parametrize(
    ("kind", "recent", "seconds"),
    [
        (RECYCLE, 1, 30),
        (RECYCLE, 2, 60),
        (RECYCLE, 3, 120),
        (RECYCLE, 10, 900),
        (RESTART, 1, 120),
        (RESTART, 2, 240),
        (RESTART, 6, 1800),
    ],
)
def test_cooldown_doubles_up_to_a_ceiling(kind, recent, seconds):
    """Cool-downs double with each recent action, up to 15 min (recycle) or 30 min (restart)."""
    assert cooldown_seconds(kind, recent) == seconds


@dataclass(frozen=True)
class FakeMemory:
    pid: int
    ppid: int
    name: str
    pss: int
    uss: int


@pytest.mark.parametrize(
    ("component", "tree", "roles"),
    [
        (
            "web",
            [FakeMemory(10, 1, "python", 0, 0), FakeMemory(11, 10, "python", 0, 0)],
            [GUNICORN_MASTER, GUNICORN_WORKER],
        ),
        (
            "worker",
            [
                FakeMemory(20, 1, "python", 0, 0),
                FakeMemory(21, 20, CELERY_CHILD_NAME, 0, 0),
                FakeMemory(22, 20, CELERY_BEAT_NAME, 0, 0),
                FakeMemory(23, 20, "python", 0, 0),  # no hooks: never taken for a child
                FakeMemory(24, 21, "sh", 0, 0),  # a task's subprocess
            ],
            [CELERY_MAIN, CELERY_CHILD, BEAT, OTHER, OTHER],
        ),
        ("beat", [FakeMemory(30, 1, "python", 0, 0)], [BEAT]),
    ],
)
def test_roles_come_from_tree_shape_and_names(component, tree, roles):
    """The program's root, its direct children and the hooks' names give each role."""
    sample = component_sample(component, tree[0].pid, tree)
    assert [p.role for p in sample.processes] == roles


def test_component_sample_converts_bytes_to_mb():
    """PSS and USS arrive in bytes and are kept in MB."""
    sample = component_sample("beat", 30, [FakeMemory(30, 1, "python", 64 * MB, 32 * MB)])
    assert sample == ComponentSample("beat", 30, (ProcessSample(30, BEAT, 64.0, 32.0),))


def test_limits_from_budget_use_its_margins():
    """The soft line is the budget minus the safety margin, then the last-resort line."""
    limits = Limits.from_budget(resolve_budget(None, None), SHARES)
    assert limits == Limits(512, 460, 491, SHARES, frozenset({"beat"}))


def test_limits_survive_a_round_trip_through_json():
    """as_dict/from_dict carry the limits from the launcher to supervisord's process."""
    import json

    limits = Limits(512, 460, 491, SHARES, frozenset({"beat", "worker"}))
    assert Limits.from_dict(json.loads(json.dumps(limits.as_dict()))) == limits


def test_report_line_shows_use_against_share():
    """The periodic line lists each component against its share and the tree against the lines."""
    assert report_line(LIMITS, (web(20, 20), worker(15, 15))) == (
        "memory: web 90/150 MB (3 proc), worker 106/250 MB (4 proc); tree 196/512 MB "
        "(recycling above 460, restart above 491)"
    )


@pytest.mark.parametrize(
    ("last", "now", "due"), [(None, 0.0, True), (0.0, 599.0, False), (0.0, 600.0, True)]
)
def test_report_is_due_every_ten_minutes(last, now, due):
    """The report comes first at start, then every REPORT_INTERVAL_SECONDS."""
    assert report_due(last, now) is due
