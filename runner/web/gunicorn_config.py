"""Gunicorn's configuration module for the runner's web: the runner's options, and no file.

Gunicorn reads ``./gunicorn.conf.py`` from the working directory when it is given no
``--config``, and applies it on top of its command line: a project's own file would then be
half-applied under the runner's flags (its log settings doubled every line, its workers and
binds fought the memory plan). The plan passes ``--config python:runner.web.gunicorn_config``
so that this module is the one Gunicorn reads; every option the runner sets is on the
command line (``runner.config.plan``), where ``python -m runner plan`` shows it, so this
module sets nothing more but one hook (``when_ready``: where to open the site). A project's
``gunicorn.conf.py`` is reported at start, not read.
"""

import os

from runner.config.platform import stop_window


def when_ready(server) -> None:
    """Gunicorn's hook once it listens: on a machine of one's own (no platform recognised),
    one line saying where to open the site, which Gunicorn's "Listening at: 0.0.0.0" does
    not."""
    if stop_window(os.environ).platform is not None:
        return
    for address in getattr(server, "address", ()):
        if isinstance(address, tuple) and len(address) >= 2:
            server.log.info(
                "ready: open http://localhost:%s/ (status: /status/, health: /healthz)",
                address[1],
            )
            return
