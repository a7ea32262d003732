"""The memory plan: how the processes that give the asked capacity share one budget.

Pure: from the budget (``runner.config.budget``), the enabled components and the capacity asked
(``WEB_CONCURRENCY`` concurrent requests, ``CELERY_CONCURRENCY`` concurrent tasks), choose
how many processes and threads provide it, check that the floor (what they use once warm,
measured in ``runner.config.budget``) fits, and share the rest of the budget out in proportion.

Choices, from bench/process_costs.py on the demo (see the README's *Memory* section):
- web: one Gunicorn process with threads (gthread) serves the same number of concurrent
  requests as that many sync workers for one process's memory: each forked worker un-shares
  ~23 MB of the preloaded master as it serves pages;
- worker: below ``PREFORK_FROM_MB`` of budget, the threads pool: one process, ~25 MB less
  than a prefork main and its children, which is what brings the 512 MB layout under 0.6
  of the seed's three services. A running thread cannot be cancelled, so at the end of the
  shutdown grace ``runner.worker.entry`` hands the unfinished tasks back to the broker and
  exits; the watchdog restarts the whole worker gracefully instead of one child. From
  ``PREFORK_FROM_MB`` on, memory is less scarce than what prefork adds: a child per task
  slot, recycled by task count and memory, Celery's hard time limits, and a task that
  crashes its process (segfault, kernel OOM kill) takes only that child down, its message
  re-queued by the main process. ``CELERY_POOL`` overrides either way;
- beat: embedded in the worker (forked after its imports, ~20 MB; with the threads pool a
  thread of its main process, ~4 MB) instead of its own interpreter (~65 MB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from runner.config.budget import (
    BEAT_EMBEDDED,
    BEAT_SEPARATE,
    BEAT_THREAD,
    CELERY_PREFORK_CHILD,
    CELERY_PREFORK_MAIN,
    CELERY_THREADS_MAIN,
    CELERY_THREADS_THREAD,
    SUPERVISORD,
    SUPERVISORD_PRELOADED,
    WEB_GTHREAD_THREAD,
    WEB_GTHREAD_WORKER,
    WEB_MASTER,
    Budget,
)
from runner.errors import ConfigError, Problem

# More threads than this in one Gunicorn process and the GIL, not memory, limits requests.
MAX_THREADS_PER_WEB_WORKER = 4
# A forked prefork child starts with its parent's peak RSS (ru_maxrss), which is what
# Celery's --max-memory-per-child compares: a limit below it would recycle the child after
# every task. Measured ~71 MB for the demo; the limit is this plus the child's own share.
PREFORK_INHERITED_RSS_MB = 80
# From this budget on, CELERY_POOL=auto means prefork; below it, threads.
PREFORK_FROM_MB = 1024


@dataclass(frozen=True)
class WebShape:
    workers: int
    threads: int


@dataclass(frozen=True)
class WorkerShape:
    pool: str  # "prefork" or "threads"
    concurrency: int
    max_memory_per_child_kib: int | None  # prefork only


@dataclass(frozen=True)
class MemoryPlan:
    """Process shapes, the floor, each component's share, and the arithmetic for people."""

    budget: Budget
    web: WebShape | None
    worker: WorkerShape | None
    floor_mb: dict[str, int]  # per supervised program, plus "supervisord"
    shares_mb: dict[str, int]  # floor plus its part of the headroom; sums to usable_mb
    graceful_restart: frozenset[str]  # programs the watchdog can only restart as a whole
    lines: tuple[str, ...]


def web_shape(capacity: int) -> WebShape:
    """Processes x threads giving at least ``capacity`` concurrent requests, fewest processes."""
    workers = math.ceil(capacity / MAX_THREADS_PER_WEB_WORKER)
    return WebShape(workers, math.ceil(capacity / workers))


def choose_pool(asked: str, budget_mb: int) -> str:
    """``auto``: threads below PREFORK_FROM_MB of budget, prefork from it (module docstring)."""
    if asked != "auto":
        return asked
    return "threads" if budget_mb < PREFORK_FROM_MB else "prefork"


def _web_floor(shape: WebShape) -> tuple[int, str]:
    per_worker = WEB_GTHREAD_WORKER.working_mb + (shape.threads - 1) * WEB_GTHREAD_THREAD.working_mb
    total = WEB_MASTER.working_mb + shape.workers * per_worker
    return total, (
        f"master {WEB_MASTER.working_mb} + {shape.workers} x {per_worker} "
        f"(worker of {shape.threads} threads)"
    )


def _worker_floor(pool: str, concurrency: int, embed_beat: bool) -> tuple[int, str]:
    if pool == "prefork":
        main, each, unit = CELERY_PREFORK_MAIN, CELERY_PREFORK_CHILD, "prefork child"
    else:
        main, each, unit = CELERY_THREADS_MAIN, CELERY_THREADS_THREAD, "pool thread"
    total = main.working_mb + concurrency * each.working_mb
    text = f"main {main.working_mb} + {concurrency} x {each.working_mb} ({unit})"
    if embed_beat:
        # With the threads pool a thread of the main (runner.worker.beat_thread), else a
        # process forked from it.
        beat, kind = (BEAT_THREAD, "beat thread") if pool == "threads" else (BEAT_EMBEDDED, "beat")
        total += beat.working_mb
        text += f" + {kind} {beat.working_mb}"
    return total, text


def _shares(floor: dict[str, int], usable: int) -> dict[str, int]:
    """Each program's floor plus headroom in proportion to it; supervisord gets its floor."""
    headroom = usable - sum(floor.values())
    programs = {name: mb for name, mb in floor.items() if name != "supervisord"}
    weight = sum(programs.values()) or 1
    shares = {name: mb + headroom * mb // weight for name, mb in programs.items()}
    shares["supervisord"] = floor["supervisord"]
    # Integer division leaves a few MB: give them to the largest share.
    if programs:
        largest = max(programs, key=programs.__getitem__)
        shares[largest] += usable - sum(shares.values())
    return shares


def plan_memory(
    budget: Budget,
    *,
    web_capacity: int | None,
    worker_capacity: int | None,
    beat: str | None,  # "embedded", "separate" or None (no beat)
    pool: str = "auto",
    preloaded: bool = False,
) -> MemoryPlan:
    """Shapes and shares for the enabled components (capacity None: component off);
    ``preloaded``: the fork model, supervisord holding what the programs import."""
    supervisord = SUPERVISORD_PRELOADED if preloaded else SUPERVISORD
    floor: dict[str, int] = {"supervisord": supervisord.working_mb}
    lines = [
        f"supervisord {supervisord.working_mb} MB"
        + (" (holds the preloaded project: RUNNER_FORK)" if preloaded else "")
    ]
    web = worker = None
    if web_capacity is not None:
        web = web_shape(web_capacity)
        floor["web"], text = _web_floor(web)
        lines.append(f"web {floor['web']} MB = {text}")
    worker_pool = choose_pool(pool, budget.total_mb)
    if worker_capacity is not None:
        floor["worker"], text = _worker_floor(worker_pool, worker_capacity, beat == "embedded")
        lines.append(f"worker {floor['worker']} MB = {text}")
    if beat == "separate":
        floor["beat"] = BEAT_SEPARATE.working_mb
        lines.append(f"beat {floor['beat']} MB (its own interpreter)")
    total_floor = sum(floor.values())
    usable = budget.usable_mb
    lines.append(
        f"floor {total_floor} MB of {usable} MB usable ({budget.total_mb} MB budget from "
        f"{budget.source}, minus a {budget.safety_margin_mb} MB safety margin)"
    )
    if total_floor > usable:
        raise ConfigError(
            [
                Problem(
                    "MEMORY_BUDGET_MB",
                    str(budget.total_mb),
                    f"too small: the processes need {total_floor} MB once warm ("
                    + "; ".join(lines[:-1])
                    + f") but only {usable} MB is usable; raise "
                    "MEMORY_BUDGET_MB (or the instance size), or lower WEB_CONCURRENCY / "
                    "CELERY_CONCURRENCY, or run a component elsewhere (RUN_WORKER=false ...)",
                )
            ]
        )
    shares = _shares(floor, usable)
    lines.append("shares " + ", ".join(f"{name} {mb} MB" for name, mb in shares.items()))
    if worker_capacity is not None:
        per_child_kib = None
        if worker_pool == "prefork":
            spare = shares["worker"] - floor["worker"]
            per_child_mb = (
                PREFORK_INHERITED_RSS_MB
                + CELERY_PREFORK_CHILD.working_mb
                + (spare // worker_capacity)
            )
            per_child_kib = per_child_mb * 1024
            lines.append(
                f"worker child recycled after a task past {per_child_mb} MB RSS "
                f"(--max-memory-per-child; {PREFORK_INHERITED_RSS_MB} MB of it "
                "inherited from the main process)"
            )
        worker = WorkerShape(worker_pool, worker_capacity, per_child_kib)
    # The threads pool and a separate beat have no single process to retire gracefully.
    graceful_restart = {"beat"} | ({"worker"} if worker_pool == "threads" else set())
    return MemoryPlan(budget, web, worker, floor, shares, frozenset(graceful_restart), tuple(lines))
