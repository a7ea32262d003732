"""What runs inside Gunicorn and Django: the project's side of the runner.

``wsgi`` is Gunicorn's entry (``runner.web.wsgi:application``: /healthz before Django);
``django_settings`` is ``runner_settings()``, the one line a project adds for the runner's
broker, results, cache and TLS; ``cache`` is the Redis cache that shares a database with
Celery safely; ``status_view`` serves /status/ and /status.json from ``runner.status``;
``error_reports`` keeps URL passwords out of Django's error pages; ``read_ahead`` is the
Gunicorn worker class (gthread that reads a request in its event loop before a thread takes
it, so slow clients hold no thread).

May import: ``runner.config``, ``runner.status``, ``runner.worker.local_store`` (lazily),
``runner.worker.idle`` (the broker connections' name), Django. The public paths
``runner.django``, ``runner.wsgi``, ``runner.status_view`` and ``runner.cache`` are thin
aliases of these modules.
"""
