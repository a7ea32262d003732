"""Times as the status shows them, in the same words on the page and in the terminal."""

from __future__ import annotations

from datetime import datetime


def duration(seconds: float) -> str:
    """``45 s``, ``27 min``, ``3 h 5 min``, ``4 days``: precise where it matters."""
    seconds = int(abs(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def relative(moment: datetime | None, now: datetime) -> str:
    """``27 min ago`` or ``in 27 min``; empty for no moment."""
    if moment is None:
        return ""
    seconds = (now - moment).total_seconds()
    text = duration(seconds)
    return f"{text} ago" if seconds >= 0 else f"in {text}"
