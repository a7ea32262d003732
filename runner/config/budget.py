"""The memory budget: how much the whole tree may use, where that figure comes from, the
margin kept below it, and what each kind of process costs (measured).

Pure arithmetic, plus ``read_container_limit``, which reads a few small files under
``/sys/fs/cgroup`` (both paths injectable, so tests use fixture trees).

``MEMORY_BUDGET_MB`` semantics: an explicit value wins; otherwise the container's memory
limit (cgroup v2 ``memory.max`` or cgroup v1 ``memory.limit_in_bytes``, the smallest on the
path from the process's own cgroup up to the root, since every ancestor's limit applies);
otherwise 512 MB, the size of Render's free instance, which is what users of a one-service
runner most likely have (Render's containers report no cgroup limit to the process).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024

# Render's free instance: the limit that matters when nothing else says otherwise.
DEFAULT_BUDGET_MB = 512
# Accepted values of MEMORY_BUDGET_MB: below 128 MB not even one Django process fits.
MIN_BUDGET_MB = 128
MAX_BUDGET_MB = 1024 * 1024

# A cgroup v1 without a limit reports LONG_MAX rounded down to a page
# (9223372036854771712 with 4 KiB pages, another value with 64 KiB pages); anything from
# 2**62 bytes (4 EiB) up is no limit at all.
UNLIMITED_BYTES = 2**62
CGROUP_V2_UNLIMITED = "max"
CGROUP_V2_FILE = "memory.max"
CGROUP_V1_CONTROLLER = "memory"
CGROUP_V1_FILE = "memory.limit_in_bytes"

# --- Margins below the OOM line -----------------------------------------------------------
# SAFETY_MARGIN: what the plan never hands out, kept below the budget, 10 % and at least
# 32 MB (52 MB of 512). Why: the watchdog and the plan count PSS, but the kernel's OOM
# line counts more than PSS: each process's page tables and kernel stacks (0.5-2 MB per
# Python process), socket buffers, and the page cache of files the service writes (the
# SQLite database, the local broker's message files), which the cgroup charges until it
# reclaims them. And memory grows between two samples (every few seconds): a task can
# allocate tens of MB in that time, and a graceful recycle waits for the task to end.
# The tree using more than the budget minus this margin is the watchdog's cue to recycle.
SAFETY_MARGIN_FRACTION = 0.10
SAFETY_MARGIN_MIN_MB = 32
# LAST_RESORT_MARGIN: closer to the OOM line, 4 % and at least 16 MB (21 MB of 512). Above
# budget minus this, graceful recycling has not been enough in time: the watchdog restarts
# the program furthest over its share (supervisord's stop: SIGTERM, then SIGKILL after the
# grace) rather than let the kernel SIGKILL a process of its choosing without warning.
LAST_RESORT_MARGIN_FRACTION = 0.04
LAST_RESORT_MARGIN_MIN_MB = 16


# --- Measured per-process costs -----------------------------------------------------------
@dataclass(frozen=True)
class ProcessCost:
    """PSS of one kind of process in MB, rounded up: idle, and after a little work."""

    idle_mb: int
    working_mb: int


# Measured by ``python -m bench.process_costs`` (bench/results/process_costs.md): medians
# of 3 runs with the demo project ``app`` and the local filesystem broker, Python 3.11,
# Django 5.2, Celery 5.7, Gunicorn 27, on a 2-CPU x86_64 Linux VM (Debian 12, 24 GB).
# "Working" is after 8 page requests and 6 ORM tasks: a floor for a live process, not a
# peak; the plan adds room to grow. A program's total for 1, 2 and 3 workers is nearly a
# line: the first process is the total for one minus the slope, each extra one the slope.
# PSS splits the pages a parent shares with its forked children evenly, so only these sums
# mean something, not one process's figure.
SUPERVISORD = ProcessCost(18, 18)  # python -m runner.supervise.supervisord: supervisord + our relay
# The fork model (runner.supervise.preload): supervisord's process holds Django, the project
# and Celery for every program it forks, and its PSS carries its part of those shared pages;
# each program's shrinks by more (python -m bench.model_memory: idle after work, demo, 2
# runs: supervisord 18.7 -> 32.9 MB, web 73.5 -> 53.5, worker 86.9 -> 68.8, total 179 ->
# 155). The programs keep
# the exec model's costs below: what they need if the runner falls back to it.
SUPERVISORD_PRELOADED = ProcessCost(33, 33)
WEB_MASTER = ProcessCost(48, 46)  # Gunicorn master, --preload: Django and the project
# A forked worker costs little until it runs code: serving pages un-shares (copy-on-write)
# what it touches, +23 MB each here. Still cheaper than without --preload (seed: 2 workers
# that import everything themselves, 109 MB idle, 119 after work; master + 2 forked: 54, 98).
WEB_SYNC_WORKER = ProcessCost(4, 27)
WEB_GTHREAD_WORKER = ProcessCost(7, 28)  # a gthread worker with its first thread
WEB_GTHREAD_THREAD = ProcessCost(1, 1)  # each further thread (measured 0.1-0.6)
CELERY_PREFORK_MAIN = ProcessCost(69, 70)  # Celery worker main: Django, project, Celery
CELERY_PREFORK_CHILD = ProcessCost(12, 17)  # each prefork pool child forked from it
CELERY_THREADS_MAIN = ProcessCost(66, 67)  # the main process with a threads pool
CELERY_THREADS_THREAD = ProcessCost(1, 1)  # each pool thread (measured 0.0-0.2)
BEAT_EMBEDDED = ProcessCost(20, 21)  # beat forked from the worker (-B, prefork)
# With the threads pool beat is a thread of the worker's main process
# (runner.worker.beat_thread): the worker's PSS with it less without it (scenarios
# runner-default and runner-nobeat, 3 runs: 3.7 MB idle, 1.8 after work, which is noise
# around the same pages); the larger stands for both.
BEAT_THREAD = ProcessCost(4, 4)
BEAT_SEPARATE = ProcessCost(66, 65)  # celery beat as its own program: a whole interpreter


@dataclass(frozen=True)
class Budget:
    """The memory the whole service may use, in MB, and the lines the watchdog acts on."""

    total_mb: int  # the OOM line, as far as the runner can know it
    source: str  # where total_mb came from, for `runner plan`
    safety_margin_mb: int
    last_resort_margin_mb: int
    notes: tuple[str, ...] = ()

    @property
    def usable_mb(self) -> int:
        """What the plan may share out; above it the watchdog recycles gracefully."""
        return self.total_mb - self.safety_margin_mb

    @property
    def last_resort_mb(self) -> int:
        """Above this the watchdog restarts a program: the last step before the OOM line."""
        return self.total_mb - self.last_resort_margin_mb


def safety_margin_mb(total_mb: int) -> int:
    """SAFETY_MARGIN for a budget of ``total_mb``."""
    return max(math.ceil(total_mb * SAFETY_MARGIN_FRACTION), SAFETY_MARGIN_MIN_MB)


def last_resort_margin_mb(total_mb: int) -> int:
    """LAST_RESORT_MARGIN for a budget of ``total_mb``."""
    return max(math.ceil(total_mb * LAST_RESORT_MARGIN_FRACTION), LAST_RESORT_MARGIN_MIN_MB)


def resolve_budget(explicit_mb: int | None, container_limit_bytes: int | None) -> Budget:
    """The budget: MEMORY_BUDGET_MB if set, else the container's limit, else 512 MB."""
    notes: list[str] = []
    container_mb = None if container_limit_bytes is None else container_limit_bytes // MB
    if explicit_mb is not None:
        total, source = explicit_mb, "MEMORY_BUDGET_MB"
        if container_mb is not None and explicit_mb > container_mb:
            notes.append(
                f"MEMORY_BUDGET_MB={explicit_mb} is above the container's limit of "
                f"{container_mb} MB: the kernel will kill processes before the budget is "
                f"reached; lower MEMORY_BUDGET_MB to at most {container_mb}"
            )
    elif container_mb is not None:
        total, source = container_mb, "container memory limit (cgroup)"
    else:
        total, source = DEFAULT_BUDGET_MB, "default: no container limit found (Render free)"
    return Budget(
        total_mb=total,
        source=source,
        safety_margin_mb=safety_margin_mb(total),
        last_resort_margin_mb=last_resort_margin_mb(total),
        notes=tuple(notes),
    )


# --- Reading the container's limit --------------------------------------------------------
def _own_cgroups(proc_cgroup: Path) -> Iterator[tuple[str, list[str], str]]:
    """(hierarchy id, controllers, path) for each line of /proc/<pid>/cgroup."""
    try:
        text = proc_cgroup.read_text()
    except OSError:
        return
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            hierarchy, controllers, path = parts
            yield hierarchy, [c for c in controllers.split(",") if c], path


def _path_up(mount: Path, path: str) -> Iterator[Path]:
    """The cgroup directories from ``path`` up to the mount itself.

    Without a cgroup namespace a container sees its host-side path in /proc (e.g.
    ``/docker/abc``) while its own cgroup is mounted at the root: the directories that do
    not exist are skipped and the mount itself is always read.
    """
    parts = [part for part in path.strip("/").split("/") if part and part != ".."]
    for depth in range(len(parts), 0, -1):
        yield mount.joinpath(*parts[:depth])
    yield mount


def _read_limit(file: Path) -> int | None:
    """A limit in bytes from a cgroup file, None for no limit or nothing readable."""
    try:
        text = file.read_text().strip()
    except OSError:
        return None
    if text == CGROUP_V2_UNLIMITED:
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 < value < UNLIMITED_BYTES else None


def _smallest_limit(mount: Path, path: str, name: str) -> int | None:
    limits = [_read_limit(directory / name) for directory in _path_up(mount, path)]
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def read_container_limit(
    root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int | None:
    """The memory limit of this process's cgroup in bytes, or None if there is none.

    cgroup v2 (one hierarchy mounted at ``root``, which holds ``cgroup.controllers``):
    ``memory.max`` on the path from the process's cgroup (the ``0::`` line) up to the root.
    cgroup v1 (a ``memory`` hierarchy at ``root/memory``, possibly next to a v2 one in
    hybrid mode): ``memory.limit_in_bytes`` likewise, for the line naming ``memory``.
    """
    own = list(_own_cgroups(proc_cgroup))
    if (root / "cgroup.controllers").exists():
        path = next((p for hierarchy, _, p in own if hierarchy == "0"), "/")
        return _smallest_limit(root, path, CGROUP_V2_FILE)
    v1_mount = root / CGROUP_V1_CONTROLLER
    if v1_mount.is_dir():
        path = next((p for _, controllers, p in own if CGROUP_V1_CONTROLLER in controllers), "/")
        return _smallest_limit(v1_mount, path, CGROUP_V1_FILE)
    return None
