"""Strict parsing of environment variables, collecting every problem instead of stopping.

A deploy flag that is misspelt must be an error, not a silent False: ``RUN_BEAT=ture`` is
reported, like gunicorn's ``validate_bool`` and unlike lenient env libraries.
"""

from __future__ import annotations

from collections.abc import Mapping

from runner.errors import Problem

MAX_DIGITS = 18  # more than any number a variable here may hold
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


class EnvironmentReader:
    """Reads typed values from a mapping, recording a Problem for each bad one."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ
        self.problems: list[Problem] = []

    def _raw(self, name: str) -> str | None:
        return self.environ.get(name)

    def problem(self, name: str, fix: str, value: str | None = None) -> None:
        self.problems.append(Problem(name, value, fix))

    def bool(self, name: str, default: bool) -> bool:
        raw = self._raw(name)
        if raw is None:
            return default
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        self.problem(name, "not a boolean; use true or false", raw)
        return default

    def int(self, name: str, default: int | None, *, minimum: int, maximum: int) -> int | None:
        raw = self._raw(name)
        if raw is None:
            return default
        digits = raw.strip()
        # ASCII digits only: Python's int() also takes "1_0" (10) and other scripts' digits
        # ("٣" is 3), which a person reading the variable would not take for those numbers.
        if not (digits.isascii() and digits.lstrip("-").isdigit()):
            self.problem(name, f"not a whole number; use a number from {minimum} to {maximum}", raw)
            return default
        # Past any range here, and int() refuses more than 4300 digits.
        value = int(digits) if len(digits) <= MAX_DIGITS else maximum + 1
        if not minimum <= value <= maximum:
            self.problem(name, f"out of range; use a number from {minimum} to {maximum}", raw)
            return default
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self._raw(name)
        if raw is None:
            return default
        word = raw.strip().lower()
        if word not in choices:
            self.problem(name, "use one of " + ", ".join(choices), raw)
            return default
        return word

    def text(self, name: str, default: str | None = None) -> str | None:
        """A free-form value; set-but-empty is a problem (Render has no 'unset' for typos)."""
        raw = self._raw(name)
        if raw is None:
            return default
        if not raw.strip():
            self.problem(name, "empty; give a value or remove the variable", raw)
            return default
        return raw.strip()
