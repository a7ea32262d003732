"""The home page: what this service is, whether the heartbeat is alive, how to send a task."""

from datetime import timedelta

from django.shortcuts import render
from django.utils import timezone

from .models import Heartbeat

HEARTBEATS_SHOWN = 10
# The heartbeat runs every 60 seconds; after three missed beats, say something is wrong.
HEARTBEAT_STALE_AFTER = timedelta(minutes=3)


def home(request):
    """Render the last heartbeats and a note when the newest is missing or stale."""
    heartbeats = list(Heartbeat.objects.all()[:HEARTBEATS_SHOWN])
    newest = heartbeats[0].ran_at if heartbeats else None
    stale = newest is not None and timezone.now() - newest > HEARTBEAT_STALE_AFTER
    return render(
        request,
        "app/home.html",
        {"heartbeats": heartbeats, "newest": newest, "stale": stale},
    )
