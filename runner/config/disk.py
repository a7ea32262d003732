"""Disk and database faults in words: one line naming the path (or host) and the fix.

Pure: these functions only turn numbers, errors and text into sentences. The launcher uses
them before anything starts (``runner.supervise.launch``: the data directory, ``migrate``),
the local broker and result files while the service runs (``runner.worker.local_store``).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

# The least free space the local default starts with, in its data directory. What it is
# made of: SQLite's write-ahead log grows to 4 MB between two checkpoints (1000 pages of
# 4 KB, SQLite's default); migrating the demo's empty database peaks at 1.5 MB (measured:
# 1 MB of free space fails, 2 MB works); and every queued task and every stored result is
# a file, which takes at least one 4 KB block. 16 MB leaves room for about 2,500 of those.
# The data directory and the default SQLite file are usually on the same disk (the
# project's); the database is the project's to place, so only the data directory is
# measured, and a full database disk shows up as a failed ``migrate`` (migrate_failure).
MIN_FREE_MB = 16
MIN_FREE_BYTES = MIN_FREE_MB * 1024 * 1024

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})  # a full disk, or the user's quota
READ_ONLY = frozenset({errno.EROFS})

FIX_SPACE = "free some space or set RUNNER_DATA_DIR to a directory on a disk with room"
FIX_READ_ONLY = "set RUNNER_DATA_DIR to a writable directory or mount a writable disk there"

# What a failed ``migrate`` prints when its database's disk is full or cannot be written:
# SQLite's own messages (sqlite3.OperationalError), then the operating system's.
NO_SPACE_SIGNS = ("database or disk is full", "No space left on device", "Disk quota exceeded")
READ_ONLY_SIGNS = (
    "attempt to write a readonly database",
    "Read-only file system",
    # What SQLite says when it cannot create the file, or its -shm file next to it (WAL
    # mode), in a read-only folder; also when the folder is missing.
    "unable to open database file",
)


def size_text(size: int) -> str:
    """``0 bytes``, ``300 KB``, ``12.5 MB``, ``3.1 GB``: a size for people, rounded down (a
    byte short of 16 MB is not "16.0 MB" free)."""
    if size < 1024:
        return f"{size} bytes"
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            break
    return f"{int(size)} {unit}" if size >= 100 else f"{int(size * 10) / 10:.1f} {unit}"


def write_failed(path: Path | str, error: OSError, consequence: str = "") -> str | None:
    """``no space left on PATH: CONSEQUENCE; FIX``; None for errors that are not disk faults.

    ``consequence`` says what did not happen (e.g. "the message was not queued").
    """
    then = f": {consequence}" if consequence else ""
    if error.errno in NO_SPACE:
        return f"no space left on {path}{then}; {FIX_SPACE}"
    if error.errno in READ_ONLY:
        return f"cannot write to {path} (read-only file system){then}; {FIX_READ_ONLY}"
    return None


def data_dir_problem(path: Path, error: OSError) -> str:
    """Why the data directory cannot be prepared, and the fix, on one line."""
    disk_fault = write_failed(path, error)
    if disk_fault is not None:
        return f"RUNNER_DATA_DIR: {disk_fault}"
    if error.errno in (errno.EEXIST, errno.ENOTDIR):
        # mkdir's "File exists" names the symptom: the path (or a parent) is a file.
        blocker = next((p for p in (path, *path.parents) if p.is_file()), path)
        return (
            f"RUNNER_DATA_DIR: {blocker} is a file, not a directory; remove it or set "
            "RUNNER_DATA_DIR to a directory"
        )
    return (
        f"RUNNER_DATA_DIR: cannot write to {path} ({error.strerror}); "
        "run from a writable directory or set RUNNER_DATA_DIR to one"
    )


def free_space_problem(path: Path, free_bytes: int) -> str | None:
    """A line when ``path`` has less than MIN_FREE_BYTES free for the local default, else None."""
    if free_bytes >= MIN_FREE_BYTES:
        return None
    return (
        f"RUNNER_DATA_DIR: no space left on {path} ({size_text(free_bytes)} free; the local "
        f"default keeps its task queue and results there and needs at least {MIN_FREE_MB} MB); "
        f"{FIX_SPACE}"
    )


def migrate_failure(output: str, database: str | None) -> str | None:
    """The reason ``migrate`` failed when its output shows a full or read-only disk, else None.

    ``database`` is the SQLite file when the runner knows it, to name it in the line.
    """
    named = f" {database}" if database else ""
    folder = f" {os.path.dirname(database)}" if database else " its disk"
    for sign in NO_SPACE_SIGNS:
        if sign in output:
            return (
                f"migrations failed: no space left for the database{named} ({sign!r}, see the "
                f"migrate lines above); free some space on{folder} or put the database on a "
                "disk with room"
            )
    for sign in READ_ONLY_SIGNS:
        if sign in output:
            return (
                f"migrations failed: cannot write the database{named} ({sign!r}, see the "
                f"migrate lines above); its folder is read-only or missing: put the database "
                "on a writable disk"
            )
    return None


# What migrate prints when its database server does not answer or refuses the user
# (psycopg 2 and 3, mysqlclient), and what each means.
UNREACHABLE_SIGNS = {
    "Connection refused": "nothing answers there (is the database running, the port right?)",
    "could not translate host name": "that host name does not resolve",
    "Name or service not known": "that host name does not resolve",
    "timeout expired": "it did not answer in time",
    "Can't connect to MySQL server": "nothing answers there",
    "password authentication failed": "it refused the user or password in DATABASE_URL",
    "does not exist": "the server answers, but that database (or user) does not exist",
}


def database_failure(output: str, address: str | None) -> str | None:
    """The reason ``migrate`` failed when its output shows the database was out of reach."""
    for sign, meaning in UNREACHABLE_SIGNS.items():
        if sign in output and ("OperationalError" in output or "psycopg" in output):
            where = f" {address}" if address else ""
            return (
                f"migrations failed: the database{where} cannot be used ({sign!r}: {meaning}); "
                "check DATABASE_URL (or the project's DATABASES), or set RUN_MIGRATIONS=false "
                "to start without migrating"
            )
    return None
