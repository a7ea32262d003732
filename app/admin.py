"""Admin pages for the demo's model (django_celery_beat and django_celery_results register
their own: periodic tasks, schedules and task results)."""

from django.contrib import admin

from .models import Heartbeat


@admin.register(Heartbeat)
class HeartbeatAdmin(admin.ModelAdmin):
    """Heartbeats, newest first, with the worker that wrote each."""

    list_display = ("ran_at", "hostname", "note")
    list_filter = ("hostname",)
    date_hierarchy = "ran_at"
