"""Turning chunks of program output into whole lines, each prefixed with its component.

supervisord hands the monitor output in chunks as read from a pipe: a chunk may hold
several lines or end in the middle of one. ``LineRelay`` keeps the unfinished tail of each
stream until its line is complete, so that lines of different components never mix.
"""

from __future__ import annotations

PREFIX_WIDTH = 6  # "worker", "runner": the longest usual names line up
# Celery names the embedded beat's process "Beat" in its default log format
# ("[...: INFO/Beat] Scheduler: Sending due task ..."), so its lines can be told apart.
EMBEDDED_BEAT_MARKER = "/Beat]"


def prefix(component: str) -> str:
    """The prefix every line of ``component`` carries on the runner's stdout."""
    return f"{component:<{PREFIX_WIDTH}} | "


def component_of(program: str, line: str) -> str:
    """Which component wrote ``line``: beat embedded in the worker speaks as beat."""
    if program == "worker" and EMBEDDED_BEAT_MARKER in line:
        return "beat"
    return program


class LineRelay:
    """Reassembles lines per (program, channel) and prefixes them."""

    def __init__(self) -> None:
        self._partial: dict[tuple[str, str], str] = {}

    def feed(self, program: str, channel: str, data: str) -> list[str]:
        """Complete lines (with prefix and newline) made available by ``data``."""
        key = (program, channel)
        text = self._partial.pop(key, "") + data
        *complete, rest = text.split("\n")
        if rest:
            self._partial[key] = rest
        return [prefix(component_of(program, line)) + line + "\n" for line in complete]

    def flush(self, program: str) -> list[str]:
        """Whatever is left of ``program``'s streams, e.g. after it exited."""
        lines = []
        for channel in ("stdout", "stderr"):
            rest = self._partial.pop((program, channel), "")
            if rest:
                lines.append(prefix(component_of(program, rest)) + rest + "\n")
        return lines
