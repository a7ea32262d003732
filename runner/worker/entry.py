"""``python -m runner.worker.entry``: Celery's command line with a bounded warm shutdown.

On SIGTERM Celery's worker does a warm shutdown: it stops taking tasks and waits for the
running ones to finish, for as long as they take. Render kills the instance 30 s after
SIGTERM, so an unbounded wait ends in SIGKILL and, without acknowledgement, in tasks
re-delivered only after the broker's visibility timeout. Here the warm shutdown gets
``RUNNER_WARM_SHUTDOWN_SECONDS``; then the worker turns it into Celery's cold shutdown, which
cancels what is still running so that late-acknowledged tasks go back to the queue now.
Tasks that finish in time are simply done: nothing waits longer than it must.

At the end of the grace the worker first gives back every message it holds unacknowledged
(``give_back``: deliverable again at once, to the next worker that starts or any that
runs), then ends what still runs. Giving back comes first because what follows is not
sure to finish: Celery's cold shutdown restores unacknowledged messages only when it
closes the broker connection, and measured here (prefork, local broker) it sometimes had
not got there 5 s later, when supervisord's SIGKILL came, and the message -- kept only in
kombu's memory with the local broker -- was lost. Then:

- prefork: Celery's cold shutdown (SIGQUIT), which kills the children running tasks;
- a pool that cannot cancel a running task (threads: a thread cannot be stopped, so the
  cold shutdown would wait for it until the SIGKILL): the worker exits at once.

A task that finishes between the two steps may run again: late acknowledgement is "at
least once".
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import warnings

from celery.signals import task_postrun, worker_init, worker_shutting_down

from runner.celery_cli import without_amqp_shell
from runner.config.plan import (
    CELERY_BEAT_NAME,
    NICENESS_VARIABLE,
    RESTART_AFTER_TASKS_VARIABLE,
    WARM_SHUTDOWN_VARIABLE,
    WORKER_PARENT_DEATH_SIGNAL,
    WORKER_SHARE_VARIABLE,
)
from runner.errors import EXIT_MEMORY_RESTART, EXIT_PLANNED_RESTART
from runner.worker import (
    beat_record,
    beat_thread,
    beat_watch,
    broker_fault,
    idle,
    intent,
    liveness,
    local_store,
    memory_check,
    memory_emergency,
    redis_restart,
)
from runner.worker import hooks as celery_hooks

EX_REQUEUED = 0  # a clean exit: nothing is lost, the tasks are back in the queue
# How long the worker waits for its own children (the embedded beat saving its schedule)
# before it exits, then SIGKILLs what is left: it never leaves an orphan or a zombie.
CHILDREN_EXIT_SECONDS = 5.0

logger = logging.getLogger("runner.worker.entry")
SUPERVISORD_GONE_SIGNAL = signal.Signals[f"SIG{WORKER_PARENT_DEATH_SIGNAL}"]
# The worker (WorkController) of this process, once Celery has built it.
_workers: list = []


def _remember_worker(sender=None, **_kwargs) -> None:
    _workers.append(sender)
    # Before the consumer is built: it reads its steps from the app then.
    redis_restart.add_to(sender.app)
    # Redis full, capped or refusing: a pause and a new start, not a failed one.
    broker_fault.install_on(sender)
    # Before the consumer connects: the minute-long BRPOP, in this worker only.
    idle.worker_transport_options(sender.app)
    # A task that was running at the memory budget's last resort twice is not run again.
    memory_emergency.revoke_repeat_offenders()
    # The local default: what a killed worker had taken goes back in the queue.
    restored = local_store.restore_taken_for(sender.app)
    if restored:
        logger.warning(
            "worker: %d task(s) taken by a worker that was killed put back in the queue",
            restored,
        )


def pool_can_cancel(pool) -> bool:
    """Whether ``pool`` can stop a running task (prefork kills the child that runs it)."""
    from celery.concurrency.base import BasePool

    # Prefork binds its pool's terminate_job on start; the others keep BasePool's, which raises.
    return getattr(pool.terminate_job, "__func__", None) is not BasePool.terminate_job


def give_back(message) -> None:
    """Make one unacknowledged message deliverable again, from any thread.

    Redis: not a reject. A reject pushes the message back onto the queue's list, and this
    worker's consumer may still have a BRPOP waiting on that list (kombu sends it ahead
    and reads the answer in the event loop, which no longer runs): Redis hands the message
    straight to that BRPOP, and it dies with the process -- seen in
    tests/e2e/test_faults.py, where the queue stayed empty. Instead the message stays in
    kombu's ``unacked`` hash and its delivery time in ``unacked_index`` is set to 0, as if
    its visibility timeout had passed: the next worker to start (or any running one)
    restores it at its next scan, kombu's own recovery (``QoS.restore_visible``, as a
    worker starts, then every 10 minutes with the runner's settings). Other transports: kombu's
    reject with requeue (the filesystem transport writes the message back to its folder;
    kombu keeps unacknowledged messages only in memory there).

    Not ``request.reject()`` either: the consumer gives requests a reject callback that
    runs only at the event loop's next turn (``call_soon``), which never comes once the
    worker exits.
    """
    channel = message.channel
    index_key = getattr(getattr(channel, "qos", None), "unacked_index_key", None)
    if index_key is None:
        message.reject(requeue=True)
        return
    with channel.conn_or_acquire() as client:  # a connection of its own from the pool
        client.zadd(index_key, {message.delivery_tag: 0}, xx=True)


def requeue_unacknowledged() -> int:
    """Give the broker back every message this worker holds unacknowledged; how many.

    Running tasks (``active_requests``) and tasks received but not started
    (``reserved_requests``, e.g. waiting for a free thread) alike. A task acknowledged on
    receipt (``acks_late`` off) has nothing left to give back.
    """
    from celery.worker import state

    held = {*state.active_requests, *state.reserved_requests}
    requeued = 0
    for request in held:
        if request.acknowledged:
            continue
        try:
            give_back(request.message)
            request.acknowledged = True  # nothing else may ack or reject it now
        except Exception:  # one failure must not keep the others from going back
            logger.exception(
                "could not put task %s[%s] back in the queue", request.name, request.id
            )
            continue
        requeued += 1
    return requeued


def stop_consuming(worker) -> None:
    """Take no more tasks: cancel the worker's task consumer, as Celery's cold shutdown does
    before it restores messages. Without it, a message given back can be taken again at
    once by this same worker, which is about to exit (seen with the local broker: the
    message was "received" again in the same millisecond, then lost with the process)."""
    consumer = getattr(worker, "consumer", None)
    task_consumer = getattr(consumer, "task_consumer", None)
    if task_consumer is None:
        return
    try:
        task_consumer.cancel()
    except Exception:  # a broken connection consumes nothing anyway
        logger.debug("cancelling the task consumer failed", exc_info=True)


def _end_warm_shutdown(reason: str = "shutdown grace over", now: bool = False) -> None:
    """Give back what this worker holds, then end what still runs: Celery's cold shutdown
    where the pool can cancel tasks; else, and with ``now`` (nobody waits for a clean exit),
    the pool's processes are ended and this one exits at once."""
    worker = _workers[-1] if _workers else None
    pool = getattr(worker, "pool", None)
    beat_watch.stop_watching()  # beat is ended below, on purpose
    # Again, from here: the cancel asked for at the start of the warm shutdown runs only if
    # the consumer's loop still turns, which Redis's event loop may no longer do by now.
    stop_consuming(worker)
    requeued = requeue_unacknowledged()
    if not now and (pool is None or pool_can_cancel(pool)):
        logger.warning(
            "%s: %d unfinished task(s) put back in the queue; cancelling them (cold shutdown)",
            reason,
            requeued,
        )
        os.kill(os.getpid(), signal.SIGQUIT)
        return
    logger.warning(
        "%s: %d unfinished task(s) put back in the queue (a %s pool cannot stop a running "
        "task); exiting now",
        reason,
        requeued,
        type(pool).__module__.rsplit(".", 1)[-1],
    )
    if now:
        _end_children()
    beat_thread.stop(worker)  # its schedule saved and its leader lock freed before the exit
    wait_for_children(stop_beat=True)
    logging.shutdown()  # flush the line before the exit that skips Python's clean-up
    os._exit(int(intent.exit_status(EX_REQUEUED) or 0))


def wait_for_children(timeout: float = CHILDREN_EXIT_SECONDS, stop_beat: bool = False) -> None:
    """Reap every child of this process before it exits, waiting up to ``timeout``.

    Celery's worker sends its embedded beat SIGTERM as it stops but does not wait for it:
    the worker exited while beat was still saving its schedule, and beat became a zombie of
    PID 1 (the container's init, which may never reap it). ``stop_beat`` sends that SIGTERM
    here, for the exits that skip Celery's own stop. What outlives ``timeout`` is killed.
    """
    import psutil

    children = psutil.Process().children()
    if stop_beat:
        for child in children:
            with contextlib.suppress(psutil.Error):
                if child.name() == CELERY_BEAT_NAME:
                    child.terminate()
    _gone, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            logger.warning(
                "%s (pid %d) did not exit in %g s: killed", child.name(), child.pid, timeout
            )
            child.kill()
    psutil.wait_procs(alive, timeout=1)


def _end_children() -> None:
    """SIGKILL this process's children (pool children; the embedded beat has its own
    parent-death signal): what they ran was given back already."""
    import psutil

    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            child.kill()


def _stop_consuming_soon() -> None:
    """Ask the consumer's own loop to stop taking tasks, at its next turn.

    With the local broker (kombu's filesystem transport, whose consumer is Celery's
    synchronous loop) a worker in warm shutdown goes on receiving and running new tasks
    until the last running one ends -- seen here: tasks sent after SIGTERM ran. The
    memory watchdog restarts a threads-pool worker this way, so a leaking worker kept
    taking the leaking task and went past the budget. The cancel runs in the loop
    (``call_soon``), not in this signal handler, which may have interrupted that loop in
    the middle of the channel's own bookkeeping.
    """
    worker = _workers[-1] if _workers else None
    consumer = getattr(worker, "consumer", None)
    if consumer is not None and hasattr(consumer, "call_soon"):
        consumer.call_soon(stop_consuming, worker)


def _bound_warm_shutdown(sig=None, how=None, exitcode=None, **_kwargs) -> None:
    if how != "Warm":
        return
    _stop_consuming_soon()
    seconds = float(os.environ.get(WARM_SHUTDOWN_VARIABLE) or 0)
    if seconds <= 0:
        return
    timer = threading.Timer(seconds, _end_warm_shutdown)
    timer.daemon = True  # the worker exiting earlier must not wait for the timer
    timer.start()


def _on_supervisord_gone(_signum=None, _frame=None) -> None:
    """The kernel's parent-death signal (``runner.supervise.supervisord`` asks for it): no
    supervisor is left to stop this worker within a grace, so it stops now, the way its
    grace ends: nothing more taken, unfinished tasks given back, then the exit. In a thread:
    giving back talks to the broker, which a signal handler must not do."""
    thread = threading.Thread(
        target=_end_warm_shutdown, args=("supervisord is gone", True), daemon=True
    )
    thread.start()


def _end_for_memory() -> None:
    """The memory emergency's way out: everything given back, then the exit, at once."""
    intent.restart_status(EXIT_MEMORY_RESTART)
    _end_warm_shutdown("memory over the budget's last line", now=True)


class TaskCountRestart:
    """After ``limit`` tasks, a graceful restart: ``--max-tasks-per-child`` for a pool
    without children (threads). The worker stops taking tasks, lets the running ones finish
    within the warm shutdown's bound, and exits; supervisord starts it again, with the
    memory the tasks kept given back. Counted in the worker's main process, where the
    threads run; ``task_postrun`` fires once per task, whatever its outcome."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.done = 0
        self._lock = threading.Lock()

    def __call__(self, **_kwargs) -> None:
        with self._lock:
            self.done += 1
            if self.done != self.limit:
                return
        logger.warning(
            "worker: %d tasks done (CELERY_MAX_TASKS_PER_CHILD): restarting gracefully, "
            "so that the memory they kept is given back",
            self.limit,
        )
        intent.restart(EXIT_PLANNED_RESTART)


def restart_after_tasks() -> TaskCountRestart | None:
    """The task counter the plan asked for (RUNNER_RESTART_AFTER_TASKS), connected."""
    limit = memory_check.positive_int(RESTART_AFTER_TASKS_VARIABLE)
    if limit is None:
        return None
    counter = TaskCountRestart(limit)
    task_postrun.connect(counter, weak=False)
    return counter


def lower_priority() -> None:
    """Run at the niceness the plan asks for (``runner.config.plan.BACKGROUND_NICENESS``); pool
    children and the embedded beat inherit it."""
    niceness = int(os.environ.get(NICENESS_VARIABLE) or 0)
    if niceness > 0:
        os.nice(niceness)


def main() -> None:
    # Celery's nine-line warning about root, at every worker start: the runner says it once,
    # in one line, as it starts (runner.supervise.launch).
    from celery.exceptions import SecurityWarning

    warnings.filterwarnings("ignore", "You're running the worker with superuser", SecurityWarning)
    lower_priority()
    without_amqp_shell()
    # Until this handler is set, the signal's default action (exit) is the answer: early in
    # the start there is nothing to give back.
    signal.signal(SUPERVISORD_GONE_SIGNAL, _on_supervisord_gone)
    worker_init.connect(_remember_worker, weak=False)
    worker_shutting_down.connect(_bound_warm_shutdown, weak=False)
    # Pool children the memory watchdog can retire after their task, and gc.freeze().
    celery_hooks.install()
    # With the threads pool, beat as a thread of this process, not a process of its own.
    beat_thread.install()
    # This instance's beat writes down its start and each send (the status page's source).
    beat_record.install()
    # Fewer Redis commands at idle, and a stop that does not wait for the pending BRPOP.
    idle.install()
    # A consumer that stopped asking Redis for work is restarted (liveness is taking work).
    liveness.install()
    restart_after_tasks()
    # A fast leak: the threads pool checks its memory after every task.
    memory_check.install()
    # Over the budget's last line: out now, tasks given back (the watchdog's signal).
    if memory_check.positive_int(WORKER_SHARE_VARIABLE) is not None:  # a pool without children
        memory_emergency.install(_end_for_memory)
    else:  # prefork: the watchdog SIGKILLs the child holding the memory
        memory_emergency.count_killed_children()
    from celery.__main__ import main as celery_main

    sys.argv[0] = "celery"
    try:
        celery_main()
    except SystemExit as stop:
        # Celery's status, or why this worker asked to restart (runner.supervise.exits).
        raise SystemExit(intent.exit_status(stop.code)) from None
    finally:
        wait_for_children()


if __name__ == "__main__":
    main()
