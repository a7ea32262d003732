"""The demo's Celery tasks: a few to try by hand (``burn`` loads a CPU for benchmarks) and the
heartbeat that beat runs every minute.

Task names follow the module path ("app.tasks.add"), which is what a client passes to
``send_task`` when it does not import this module.
"""

import socket
import time

from celery import shared_task

from .models import Heartbeat

# Heartbeats kept in the table; at one a minute, about 16 hours of history.
HEARTBEATS_KEPT = 1000


@shared_task
def add(x, y):
    """Return x + y: the smallest round trip through broker, worker and result backend."""
    return x + y


@shared_task
def slow(seconds):
    """Sleep for ``seconds`` and return it: for trying time limits, concurrency and shutdown."""
    seconds = float(seconds)
    time.sleep(seconds)
    return seconds


@shared_task
def burn(seconds):
    """Keep one CPU busy for ``seconds`` and return the loop count: load for benchmarks."""
    deadline = time.monotonic() + float(seconds)
    loops = 0
    while time.monotonic() < deadline:
        loops += 1
    return loops


@shared_task
def record_heartbeat():
    """Write a Heartbeat row, drop all but the newest HEARTBEATS_KEPT, and return its id."""
    heartbeat = Heartbeat.objects.create(hostname=socket.gethostname())
    # The oldest row still kept; everything older goes. Cheap with the index on ran_at,
    # and portable (unlike DELETE ... LIMIT or a sliced subquery on MySQL).
    newest = Heartbeat.objects.order_by("-ran_at").values_list("ran_at", flat=True)
    try:
        oldest_kept = newest[HEARTBEATS_KEPT - 1]
    except IndexError:
        return heartbeat.pk
    Heartbeat.objects.filter(ran_at__lt=oldest_kept).delete()
    return heartbeat.pk
