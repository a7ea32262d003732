"""The home page: what this service is, whether the heartbeat is alive, how to send a task."""

from datetime import timedelta

from django.conf import settings
from django.http import HttpResponse
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
        {
            "heartbeats": heartbeats,
            "newest": newest,
            "stale": stale,
            "broker": broker_kind(settings.CELERY_BROKER_URL),
        },
    )


def broker_kind(url: str) -> str:
    """"redis" or "local": what carries the tasks, as the page says it (never the URL)."""
    return "redis" if url.startswith(("redis://", "rediss://")) else "local"


def no_icon(request):
    """204 for /favicon.ico, cached for a day: the demo has no icon."""
    response = HttpResponse(status=204)
    response["Cache-Control"] = "public, max-age=86400"
    return response
