"""Small files through which a running service can be found and looked into from outside.

Two files, both plain JSON, both written atomically (a reader never sees half a file):

- the **pointer**, ``runner.json`` in the data directory, written by ``runner.supervise.launch``
right
  before it becomes supervisord: the supervisord PID and its control socket. It is how
  ``python -m runner status``, run from another shell in the same directory, finds the
  service. supervisord's control socket lives in a private temporary directory with a
  random name, so without the pointer nothing outside the service could know where it is.
  A pointer whose process is gone (or whose PID now belongs to another process) is stale:
  it is removed when read, and reads as "nothing runs here".
- the **start counts**, ``starts.json`` next to the control socket, rewritten by
  ``runner.supervise.supervisord`` every time supervisord spawns a program. supervisord itself keeps
  no such count (its ``getProcessInfo`` has the last start time, not how many there
  were), and restarts are what a person wants to see.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

POINTER_NAME = "runner.json"
STARTS_NAME = "starts.json"
UNIX_PREFIX = "unix://"
# psutil's create_time is rounded differently on two reads of /proc; a PID is the same
# process when its creation times agree to within this.
CREATE_TIME_TOLERANCE_SECONDS = 1.0


@dataclass(frozen=True)
class Pointer:
    """Where a running service's supervisord is: its PID and control socket URL."""

    pid: int
    create_time: float  # of that PID, so a reused PID is not taken for the service
    supervisor_url: str  # unix:///tmp/runner-xxxx/supervisor.sock
    cwd: str

    @property
    def run_dir(self) -> Path:
        return run_dir_of(self.supervisor_url)


def run_dir_of(supervisor_url: str) -> Path:
    """The private run directory holding a ``unix://`` control socket."""
    return Path(supervisor_url.removeprefix(UNIX_PREFIX)).parent


def write_json(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` atomically (a temporary file, then rename)."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def write_pointer(data_dir: Path, pid: int, supervisor_url: str, cwd: Path) -> Path:
    """Record that the service with ``pid`` is controlled through ``supervisor_url``."""
    path = data_dir / POINTER_NAME
    write_json(
        path,
        {
            "pid": pid,
            "create_time": psutil.Process(pid).create_time(),
            "supervisor_url": supervisor_url,
            "cwd": str(cwd),
        },
    )
    return path


def _alive(pid: int, create_time: float) -> bool:
    try:
        process = psutil.Process(pid)
        return (
            abs(process.create_time() - create_time) < CREATE_TIME_TOLERANCE_SECONDS
            and process.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False


def read_pointer(data_dir: Path) -> Pointer | None:
    """The live service recorded in ``data_dir``, or None; a stale pointer is removed."""
    path = data_dir / POINTER_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        pointer = Pointer(
            pid=int(data["pid"]),
            create_time=float(data["create_time"]),
            supervisor_url=str(data["supervisor_url"]),
            cwd=str(data.get("cwd", "")),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        pointer = None  # unreadable: as good as stale
    if pointer is not None and _alive(pointer.pid, pointer.create_time):
        return pointer
    with contextlib.suppress(OSError):
        path.unlink()
    return None


def write_starts(run_dir: Path, starts: Mapping[str, int]) -> None:
    """Record how many times each program was spawned since the service started."""
    write_json(run_dir / STARTS_NAME, dict(starts))


def read_starts(run_dir: Path) -> dict[str, int]:
    """Spawns per program, or an empty mapping when nothing was recorded (yet)."""
    try:
        data = json.loads((run_dir / STARTS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(name): int(count) for name, count in data.items() if isinstance(count, int)}
