"""After every task, the threads-pool worker checks its memory against its share.

The watchdog inside supervisord samples the tree every few seconds, which follows a slow
leak. A fast one passes between two samples: a task that keeps 40 MB, sent 12 times back
to back, took the tree from 140 to 637 MB in half a second, past Render's 512 MB, where the
kernel's OOM killer SIGKILLs. Celery checks a prefork child after each of its tasks
(``--max-memory-per-child``, which the plan sets); a pool without children (threads) has
no such check, since its tasks run in the worker's own process. ``MemoryShareRestart`` is
that check for it, on ``task_postrun`` in the worker's main process:

- the worker's memory is its PSS (what the budget counts), estimated cheaply from its RSS
  (``/proc/self/statm``) minus the RSS-PSS difference measured once (shared library
  pages), so a check costs microseconds, not a read of ``smaps``;
- it keeps the largest growth seen from one task's end to the next, and restarts when
  *the next task at that growth* would take it over its share: the peak stays at about the
  share, not one task past it;
- a restart is graceful, as ``CELERY_MAX_TASKS_PER_CHILD``'s (``runner.worker.intent``): a
  SIGTERM to itself, so the worker stops taking tasks at once, gives back the ones it had
  reserved, lets the running one finish within the warm-shutdown bound, and exits with
  ``EXIT_MEMORY_RESTART``; supervisord starts it again with the memory given back, after a
  pause if it keeps happening (``runner.supervise.exits``). One line says why: the task that
  kept the most, and how much.

The share comes from the plan (``RUNNER_WORKER_SHARE_MB``, ``python -m runner plan``).
"""

from __future__ import annotations

import logging
import os
import threading

import psutil
from celery.signals import task_postrun

from runner.config.plan import WORKER_SHARE_VARIABLE
from runner.errors import EXIT_MEMORY_RESTART
from runner.worker import intent

logger = logging.getLogger("runner.worker")
MB = 1024 * 1024


class OwnMemory:
    """This process's PSS in MB, estimated from its RSS: RSS minus the difference seen once."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._rss_over_pss: float | None = None

    def __call__(self) -> float:
        rss = self._process.memory_info().rss
        if self._rss_over_pss is None:
            try:
                self._rss_over_pss = max(0.0, rss - self._process.memory_full_info().pss)
            except (psutil.Error, AttributeError):  # no smaps: count RSS, which is more
                self._rss_over_pss = 0.0
        return (rss - self._rss_over_pss) / MB


class MemoryShareRestart:
    """On each ``task_postrun``: restart gracefully when the next task would exceed the share."""

    def __init__(self, share_mb: float, measure=None, restart=None) -> None:
        self.share_mb = share_mb
        self.measure = measure or OwnMemory()
        self.restart = restart or (lambda: intent.restart(EXIT_MEMORY_RESTART))
        self.last_mb: float | None = None
        self.largest_growth_mb = 0.0
        self.largest_task = "?"  # the task whose run grew the worker the most
        self.restarting = False
        self._lock = threading.Lock()

    def __call__(self, sender=None, **_kwargs) -> None:
        with self._lock:
            if self.restarting:
                return
            now = self.measure()
            if self.last_mb is not None and now - self.last_mb > self.largest_growth_mb:
                self.largest_growth_mb = now - self.last_mb
                self.largest_task = getattr(sender, "name", None) or "?"
            self.last_mb = now
            if now + self.largest_growth_mb <= self.share_mb:
                return
            self.restarting = True
        logger.warning(
            "worker: %.0f MB after a task, growing up to %.0f MB a task (%s kept the most): "
            "the next would pass its %.0f MB share; restarting gracefully to give the memory "
            "back",
            now,
            self.largest_growth_mb,
            self.largest_task,
            self.share_mb,
        )
        self.restart()


def positive_int(variable: str) -> int | None:
    """A whole number of at least 1 the plan put in ``variable``, else None."""
    value = os.environ.get(variable, "")
    return int(value) if value.isdigit() and int(value) >= 1 else None


def install() -> MemoryShareRestart | None:
    """The check the plan asked for (``RUNNER_WORKER_SHARE_MB``), connected; else None."""
    share = positive_int(WORKER_SHARE_VARIABLE)
    if share is None:
        return None
    check = MemoryShareRestart(share)
    task_postrun.connect(check, weak=False)
    return check
