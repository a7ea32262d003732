"""The Django app configuration for the demo's own models, tasks and templates."""

import django
from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _sqlite_pragmas(sender, connection, **kwargs) -> None:
    """WAL and synchronous=NORMAL on each new SQLite connection (Django before 5.1)."""
    from django.conf import settings

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.executescript(settings.SQLITE_PRAGMAS)


class DemoConfig(AppConfig):
    """Registers the ``app`` package (Heartbeat model, tasks, home page template)."""

    name = "app"
    verbose_name = "Demo"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        if django.VERSION < settings.SQLITE_OPTIONS_SINCE:
            connection_created.connect(_sqlite_pragmas, dispatch_uid="app.sqlite_pragmas")
