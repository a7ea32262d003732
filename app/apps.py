"""The Django app configuration for the demo's own models, tasks and templates."""

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Registers the ``app`` package (Heartbeat model, tasks, home page template)."""

    name = "app"
    verbose_name = "Demo"
    default_auto_field = "django.db.models.BigAutoField"
