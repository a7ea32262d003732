"""How much memory a process tree uses right now: one PSS figure per process, via psutil.

The figure is **PSS** (proportional set size): a process's private pages plus, for every
page it shares, that page's size divided by the number of processes mapping it. Summed over
a tree, each shared page is counted once in total. That matters here because the runner
forks on purpose: Gunicorn workers forked from a ``--preload`` master and Celery children
forked from the worker's main process share most of their pages (copy-on-write) with their
parent. Summing RSS, as superlance ``memmon`` does, counts those pages once per process and
reports a 2-worker Gunicorn at about three times what it costs; summing USS (private pages
only) forgets the shared pages altogether. PSS is also what the kernel's cgroup accounting
comes closest to: it charges each page once, to the tree that touched it.

USS is kept alongside: it is what recycling one process gives back (its private pages; the
shared ones stay with the parent), so the watchdog uses it to pick whom to recycle.

Read from ``/proc/PID/smaps_rollup`` (psutil's ``memory_full_info``): the kernel walks the
process's page tables, about 1 ms for a process that imported Django (7-22 ms for the whole
8-10 process tree of the runner on a 2-CPU VM, within the 30 ms a sample may take every few
seconds inside supervisord). Processes that exit while the tree is read are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

MB = 1024 * 1024

# What can happen to a process between listing it and reading it: it exited (possibly
# still a zombie, which has no memory left to read), or it is not ours to read.
_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


@dataclass(frozen=True)
class ProcessMemory:
    """One process of a tree: who it is and what it uses, in bytes."""

    pid: int
    ppid: int
    name: str  # the kernel's short name (comm): Celery's hooks set e.g. "celery-child"
    pss: int
    uss: int
    rss: int

    @property
    def pss_mb(self) -> float:
        return self.pss / MB

    @property
    def uss_mb(self) -> float:
        return self.uss / MB


@dataclass(frozen=True)
class ProcessTreeMemory:
    """The processes of one tree, root first; empty when the root itself has gone."""

    root_pid: int
    processes: tuple[ProcessMemory, ...]

    @property
    def pss(self) -> int:
        return sum(p.pss for p in self.processes)

    @property
    def pss_mb(self) -> float:
        return self.pss / MB

    def children_of(self, pid: int) -> tuple[ProcessMemory, ...]:
        return tuple(p for p in self.processes if p.ppid == pid)


def _read(process: psutil.Process) -> ProcessMemory | None:
    try:
        with process.oneshot():  # one read of /proc/PID/stat for ppid and name
            full = process.memory_full_info()
            return ProcessMemory(
                pid=process.pid,
                ppid=process.ppid(),
                name=process.name(),
                pss=full.pss,
                uss=full.uss,
                rss=full.rss,
            )
    except _GONE:
        return None


def sample_process(pid: int) -> ProcessMemory | None:
    """PSS, USS and RSS of ``pid`` alone (e.g. supervisord, whose tree is everything)."""
    try:
        return _read(psutil.Process(pid))
    except _GONE:
        return None


def sample_tree(pid: int) -> ProcessTreeMemory:
    """PSS, USS and RSS of ``pid`` and all its descendants, read now."""
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except _GONE:
        return ProcessTreeMemory(pid, ())
    found = (_read(process) for process in members)
    return ProcessTreeMemory(pid, tuple(p for p in found if p is not None))
