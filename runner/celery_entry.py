"""``python -m runner.celery_entry``: Celery's command line with a bounded warm shutdown.

On SIGTERM Celery's worker does a warm shutdown: it stops taking tasks and waits for the
running ones to finish, for as long as they take. Render kills the instance 30 s after
SIGTERM, so an unbounded wait ends in SIGKILL and, without acknowledgement, in tasks
re-delivered only after the broker's visibility timeout. Here the warm shutdown gets
``RUNNER_WARM_SHUTDOWN_SECONDS``; then the worker turns it into Celery's cold shutdown, which
cancels what is still running so that late-acknowledged tasks go back to the queue now.
Tasks that finish in time are simply done: nothing waits longer than it must.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from celery.signals import worker_shutting_down

from runner import celery_hooks

WARM_SHUTDOWN_VARIABLE = "RUNNER_WARM_SHUTDOWN_SECONDS"


def _bound_warm_shutdown(sig=None, how=None, exitcode=None, **_kwargs) -> None:
    if how != "Warm":
        return
    seconds = float(os.environ.get(WARM_SHUTDOWN_VARIABLE) or 0)
    if seconds <= 0:
        return
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGQUIT))
    timer.daemon = True  # the worker exiting earlier must not wait for the timer
    timer.start()


def main() -> None:
    worker_shutting_down.connect(_bound_warm_shutdown, weak=False)
    # Pool children the memory watchdog can retire after their task, and gc.freeze().
    celery_hooks.install()
    from celery.__main__ import main as celery_main

    sys.argv[0] = "celery"
    celery_main()


if __name__ == "__main__":
    main()
