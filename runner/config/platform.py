"""The platform the service runs on, from the variables it sets, and the stop grace it allows.

Pure: an environment mapping in, a ``StopWindow`` out. A platform stops a service with a
signal, then kills whatever is left after a fixed time: Render and Heroku 30 s, Kubernetes'
default ``terminationGracePeriodSeconds`` 30 s, Cloud Run 10 s, ``docker stop`` 10 s, Fly.io
its ``kill_timeout`` (5 s unless fly.toml says more).
A grace longer than that window ends in the platform's SIGKILL with a task half done and not
given back; the runner's grace is the window minus a margin for supervisord's own exit.
Where no platform is recognised (a container, a laptop) the window is docker stop's 10 s,
the shortest of the common ones. ``SHUTDOWN_GRACE_SECONDS`` overrides all of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# (the variable the platform sets in every service, its name, its stop window in seconds)
PLATFORMS: tuple[tuple[str, str, int], ...] = (
    ("RENDER", "Render", 30),
    ("DYNO", "Heroku", 30),
    ("FLY_APP_NAME", "Fly.io", 5),  # fly.toml's kill_timeout, when it does not set one
    ("K_SERVICE", "Cloud Run", 10),
    ("KUBERNETES_SERVICE_HOST", "Kubernetes", 30),
)
# Not recognised on purpose: systemd (its INVOCATION_ID reaches desktop terminals too, where
# Ctrl+C would then wait 85 s): under systemd, set SHUTDOWN_GRACE_SECONDS below TimeoutStopSec.
DEFAULT_STOP_SECONDS = 10  # docker stop's default, and Cloud Run's
MAX_MARGIN_SECONDS = 5  # supervisord's own exit after its SIGKILLs, and the platform's clock


@dataclass(frozen=True)
class StopWindow:
    """How long the platform waits after its stop signal, and the grace the runner takes."""

    platform: str | None  # None: not recognised
    variable: str | None  # the variable that told
    stop_seconds: int

    @property
    def grace_seconds(self) -> int:
        margin = min(MAX_MARGIN_SECONDS, max(1, self.stop_seconds // 5))
        return self.stop_seconds - margin

    def why(self) -> str:
        if self.platform is None:
            return (
                f"no platform recognised: docker stop's {self.stop_seconds} s assumed (the "
                "shortest common stop window)"
            )
        return (
            f"{self.platform} kills {self.stop_seconds} s after its stop signal "
            f"({self.variable} is set)"
        )


UNKNOWN_PLATFORM = StopWindow(None, None, DEFAULT_STOP_SECONDS)


def stop_window(environ: Mapping[str, str]) -> StopWindow:
    """The platform ``environ`` says the service runs on, or the default window."""
    for variable, name, seconds in PLATFORMS:
        if environ.get(variable):
            return StopWindow(name, variable, seconds)
    return UNKNOWN_PLATFORM
