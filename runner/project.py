"""Which Django project to run: its settings module and Celery app, and where each came from.

The runner runs the project in its working directory, like ``manage.py`` and ``celery -A``
would: the settings module from ``DJANGO_SETTINGS_MODULE`` or else the default its
``manage.py`` sets; the Celery app from ``CELERY_APP`` or else the settings' top package
(what ``celery -A <package>`` finds). Pure: the caller reads ``manage.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runner.errors import ConfigError, Problem

_SETDEFAULT = re.compile(
    r"""os\.environ\.setdefault\(\s*['"]DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([\w.]+)['"]"""
)
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?$")


@dataclass(frozen=True)
class Project:
    """The target project, with the origin of each choice for ``runner plan``."""

    settings_module: str
    settings_source: str
    celery_app: str
    celery_source: str


def find_project(
    settings_module: str | None, celery_app: str | None, manage_py: str | None
) -> Project:
    """Resolve the project from the variables and the text of ``manage.py`` (if any)."""
    problems: list[Problem] = []
    if settings_module:
        settings_source = "DJANGO_SETTINGS_MODULE"
    elif manage_py and (match := _SETDEFAULT.search(manage_py)):
        settings_module, settings_source = match.group(1), "manage.py"
    else:
        problems.append(
            Problem(
                "DJANGO_SETTINGS_MODULE",
                None,
                "not set and no manage.py here to read it from; run from your "
                "project's root or set DJANGO_SETTINGS_MODULE",
            )
        )
        settings_module, settings_source = "", ""
    if settings_module and not _DOTTED.match(settings_module):
        problems.append(
            Problem(
                "DJANGO_SETTINGS_MODULE",
                settings_module,
                "not a dotted module path like config.settings.production",
            )
        )

    if celery_app:
        celery_source = "CELERY_APP"
        if not _DOTTED.match(celery_app):
            problems.append(
                Problem(
                    "CELERY_APP", celery_app, "not a module path like config or config.celery:app"
                )
            )
    else:
        celery_app = settings_module.split(".", 1)[0]
        celery_source = f"top package of {settings_module}"
    if problems:
        raise ConfigError(problems)
    return Project(settings_module, settings_source, celery_app, celery_source)
