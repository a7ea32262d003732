"""Gunicorn's configuration module for the runner's web: the runner's options, and no file.

Gunicorn reads ``./gunicorn.conf.py`` from the working directory when it is given no
``--config``, and applies it on top of its command line: a project's own file would then be
half-applied under the runner's flags (its log settings doubled every line, its workers and
binds fought the memory plan). The plan passes ``--config python:runner.web.gunicorn_config``
so that this module is the one Gunicorn reads; every option the runner sets is on the
command line (``runner.config.plan``), where ``python -m runner plan`` shows it, so this
module sets nothing more. A project's ``gunicorn.conf.py`` is reported at start, not read.
"""
