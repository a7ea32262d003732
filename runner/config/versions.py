"""The versions of the libraries the runner drives, and what each version can do.

The runner installs beside a project's own pins (pyproject.toml's ranges: Django 4.2-6.x,
Celery 5.3+, gunicorn 21.2+, redis-py 4.6+, supervisor 4.2+), so the plan asks this module
before it uses a flag or setting that only newer versions know, and ``python -m runner
plan`` says what is reduced on older ones.

Pure: ``Versions.parse`` takes version strings; ``runner.supervise.discover`` reads them
from the installed distributions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# The distributions whose versions matter, by the name pip knows them.
DISTRIBUTIONS = ("Django", "celery", "kombu", "redis", "gunicorn", "supervisor", "psutil")

# gunicorn 25.1 opens a control socket (a file in $HOME, a second way in) unless told not to;
# older versions have no such socket and refuse the flag ("unrecognized arguments").
GUNICORN_CONTROL_SOCKET = (25, 1)

Release = tuple[int, ...]


def release(text: str | None) -> Release | None:
    """``"5.3.6"`` -> ``(5, 3, 6)``, ``"6.0rc1"`` -> ``(6, 0)``; None for None or nonsense."""
    if not text:
        return None
    match = re.match(r"\d+(\.\d+)*", text.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else None


@dataclass(frozen=True)
class Versions:
    """Installed releases; None where a distribution is absent or its version unknown."""

    found: Mapping[str, Release | None]

    @classmethod
    def parse(cls, texts: Mapping[str, str | None]) -> Versions:
        return cls({name: release(texts.get(name)) for name in DISTRIBUTIONS})

    def of(self, name: str) -> Release | None:
        return self.found.get(name)

    def at_least(self, name: str, wanted: Release) -> bool:
        """True when ``name`` is at ``wanted`` or newer; an unknown version counts as newest."""
        have = self.of(name)
        return have is None or have >= wanted

    @property
    def gunicorn_control_socket(self) -> bool:
        return self.at_least("gunicorn", GUNICORN_CONTROL_SOCKET)

    def line(self) -> str:
        """``Django 4.2, celery 5.3.6, ...`` for ``python -m runner plan``."""
        return ", ".join(
            f"{name} {'.'.join(map(str, version))}"
            for name, version in self.found.items()
            if version is not None
        )


# What the plan assumes when it is not told (tests, a plan made without the project).
NEWEST = Versions({name: None for name in DISTRIBUTIONS})
