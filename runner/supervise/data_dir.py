"""One runner per data directory, and a data directory nobody else can write to.

The local default keeps the queue, the results and beat's schedule in ``RUNNER_DATA_DIR``;
the runner's pointer (``runner.json``) lives there with Redis too. Two runners on one data
directory both ran beat (every periodic task twice) and the second overwrote the first's
pointer; a directory another user owns, or may write to, lets that user drop a message in
the queue that then runs as this runner's user. So, before anything starts:

- ``check_usable``: what ``plan`` can tell without writing, so that it refuses what
  ``start`` would (a file in the way, a read-only or unwritable place, a shared directory);
- ``refuse_if_shared``: the directory must belong to this user and be writable by nobody
  else (no group or other write bit), else one line and exit status 2;
- ``hold``: an exclusive ``flock`` on ``runner.lock`` in it, kept by supervisord (the file
  descriptor survives the runner's exec into it) until it exits; a second runner finds it
  taken and says whose it is, exit status 2;
- ``PRIVATE_UMASK``: what the runner creates from then on (folders, queue and result files,
  the local SQLite database) is readable by this user only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path

from runner.config.disk import data_dir_problem
from runner.errors import ConfigError, PreflightError, Problem

LOCK_NAME = "runner.lock"
PRIVATE_UMASK = 0o077
VARIABLE = "RUNNER_DATA_DIR"


def check_usable(path: Path) -> None:
    """The error ``start`` would give for ``path``, found without writing anything."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():  # bad input, not a bad disk: exit status 2
        line = data_dir_problem(path, _error(errno.ENOTDIR))
        raise ConfigError([Problem(VARIABLE, None, line.removeprefix(f"{VARIABLE}: "))])
    if existing == path:
        refuse_if_shared(path)
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise PreflightError(data_dir_problem(path, _error(errno.EROFS)))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PreflightError(data_dir_problem(path, _error(errno.EACCES)))


def _error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def refuse_if_shared(path: Path) -> None:
    """ConfigError when ``path`` belongs to another user or others may write to it."""
    info = path.stat()
    if info.st_uid != os.geteuid():
        raise ConfigError(
            [
                Problem(
                    VARIABLE,
                    str(path),
                    f"belongs to another user (uid {info.st_uid}), who could queue tasks "
                    "that run as this one; use a directory of your own",
                )
            ]
        )
    read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)  # nobody writes there
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not read_only:
        raise ConfigError(
            [
                Problem(
                    VARIABLE,
                    str(path),
                    f"is writable by others (mode {stat.S_IMODE(info.st_mode):04o}), who could "
                    f"queue tasks that run as this user; chmod 700 {path} or use another",
                )
            ]
        )


def hold(path: Path) -> int:
    """Take ``runner.lock`` in ``path`` for this process and what it execs into; its fd.

    ConfigError naming the holder's PID when another runner has it.
    """
    lock_path = path / LOCK_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = ""
        with contextlib.suppress(OSError, ValueError):
            holder = f" (pid {int(os.pread(fd, 32, 0).decode().strip())})"
        os.close(fd)
        raise ConfigError(
            [
                Problem(
                    VARIABLE,
                    str(path),
                    f"is in use by another runner{holder}: two on one data directory would "
                    "both run beat and share one local queue; give this one its own "
                    f"{VARIABLE}",
                )
            ]
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    os.set_inheritable(fd, True)  # supervisord keeps it: the lock lasts as long as it runs
    return fd
