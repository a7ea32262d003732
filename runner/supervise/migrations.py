"""The project's migrations, run in the runner's own process before it becomes supervisord.

``migrate`` used to be a subprocess (``python -m django migrate --noinput``): a second
interpreter importing Python, Django and the project again, about 0.6 s of CPU here for a
migrate with nothing to do, so about 6 s of a sleeping free instance's wake on Render's
0.1 CPU. The runner's process has the project on its path and, when a worker or beat runs,
its settings already loaded (``runner.supervise.discover``); it then ``exec``s supervisord,
which drops everything this leaves behind. So the migrations run here, with Django's own
``call_command("migrate")``, which is what ``python -m django migrate`` runs.

Side effects, kept to this module: the programs' environment is applied to ``os.environ``
for the duration (``DJANGO_SETTINGS_MODULE`` and the runner's variables, as the subprocess
had them) and restored after; Django is set up in this process; every database
connection is closed before returning, so none is inherited by supervisord. What the
project prints while it is set up is migrate's output, as it was in the subprocess.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

APPLIED_LINE = re.compile(r"^\s+Applying \S+\.\.\. OK")
TAIL_LINES = 40


@dataclass
class MigrateOutput(io.TextIOBase):
    """A text stream for migrate's output: counts the migrations applied, keeps the last
    lines, and hands each whole line to ``relay`` (or to no one)."""

    relay: Callable[[str], None] | None = None
    applied: int = 0
    tail: deque = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    _partial: str = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._line(line + "\n")
        return len(text)

    def flush(self) -> None:
        pass  # migrate flushes mid-line ("Applying x..." then " OK"): lines end at "\n"

    def finish(self) -> None:
        """The last line, if it had no newline."""
        if self._partial:
            self._line(self._partial + "\n")
            self._partial = ""

    def _line(self, line: str) -> None:
        self.applied += bool(APPLIED_LINE.match(line))
        self.tail.append(line)
        if self.relay is not None:
            self.relay(line)


@dataclass(frozen=True)
class MigrateResult:
    applied: int
    failed: bool
    tail: tuple[str, ...]
    staff_user: str | None = None  # the line about the first staff user, if one was asked for


# Django's own variables for `createsuperuser --noinput`: the way in to the admin and the
# status page on a platform without a shell (Render's free plan).
STAFF_USERNAME_VARIABLE = "DJANGO_SUPERUSER_USERNAME"
STAFF_PASSWORD_VARIABLE = "DJANGO_SUPERUSER_PASSWORD"


def ensure_staff_user(env: Mapping[str, str], output) -> str | None:
    """With DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD set, create that staff
    user unless it exists (Django's ``createsuperuser --noinput``, which reads them and any
    other required field's DJANGO_SUPERUSER_<FIELD>); one line saying what was done, the
    password never in it. Django is set up and the environment applied."""
    username = env.get(STAFF_USERNAME_VARIABLE)
    if not username or not env.get(STAFF_PASSWORD_VARIABLE):
        return None
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    user_model = get_user_model()
    manager = user_model._default_manager
    if manager.filter(**{user_model.USERNAME_FIELD: username}).exists():
        return f"staff user {username!r} ({STAFF_USERNAME_VARIABLE}) exists: left as it is"
    try:
        call_command("createsuperuser", interactive=False, stdout=output, stderr=output)
    except Exception as error:  # a missing field: said, and the service starts all the same
        return (
            f"staff user {username!r} not created ({type(error).__name__}: {error}); "
            f"set what it names (DJANGO_SUPERUSER_<FIELD>) next to {STAFF_USERNAME_VARIABLE}"
        )
    return (
        f"staff user {username!r} created from {STAFF_USERNAME_VARIABLE} and "
        f"{STAFF_PASSWORD_VARIABLE} (log in at /admin/; the password is not shown)"
    )


@contextlib.contextmanager
def _environment(env: Mapping[str, str]):
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_migrations(env: Mapping[str, str], relay: Callable[[str], None] | None) -> MigrateResult:
    """``migrate --noinput`` of the project, here; its output counted and kept (the tail, with
    the traceback when it fails), each line relayed as it comes when ``relay`` is given."""
    output = MigrateOutput(relay)
    failed = False
    staff_user = None
    with _environment(env), contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            import django
            from django.core.management import call_command

            django.setup()
            call_command("migrate", interactive=False, stdout=output, stderr=output)
            staff_user = ensure_staff_user(env, output)
        except (Exception, SystemExit):  # what the subprocess would have printed, and failed
            output.write(traceback.format_exc())
            failed = True
        finally:
            _close_connections()
            output.finish()
    return MigrateResult(output.applied, failed, tuple(output.tail), staff_user)


def _close_connections() -> None:
    with contextlib.suppress(Exception):
        from django.db import connections

        connections.close_all()
