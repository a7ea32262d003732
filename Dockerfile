# The demo as one container: web, worker and beat under the runner, which is PID 1.
# Copy it for your project: change the requirements and, if your settings module is not
# found from manage.py, set DJANGO_SETTINGS_MODULE. docs/platforms.md says how each platform
# runs it (its stop window, its PORT, its memory limit).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=8000

WORKDIR /app
# Tasks run with this user's rights, never root's.
RUN useradd --no-log-init --create-home --uid 10001 app && chown app:app /app

# Dependencies in their own layer: rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY --chown=app:app . .
USER 10001
# As the seed's build does: static files collected, the SQLite database migrated, so every
# start (a wake) begins from a migrated database; the runner checks again at boot.
RUN python manage.py collectstatic --noinput && python manage.py migrate --noinput

EXPOSE 8000
# /healthz is answered by the runner before Django; Python's own client, no curl needed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/healthz', timeout=4)"]
# docker stop: SIGTERM, then SIGKILL 10 s later. With no platform recognised the runner's
# grace is 8 s (python -m runner plan: its "stop" line), so it exits before the SIGKILL;
# `docker stop -t 60` with SHUTDOWN_GRACE_SECONDS=55 gives long tasks more time.
STOPSIGNAL SIGTERM
# Exec form: the runner is PID 1, receives the signals and reaps orphans.
CMD ["python", "-m", "runner"]
