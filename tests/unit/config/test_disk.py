"""The words for disk faults (runner.config.disk): each case, the line it makes, as tables."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from runner.config.disk import (
    FIX_READ_ONLY,
    FIX_SPACE,
    MIN_FREE_BYTES,
    MIN_FREE_MB,
    data_dir_problem,
    free_space_problem,
    migrate_failure,
    size_text,
    write_failed,
)

DATA = Path("/srv/app/.runner-data")


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1024, "1.0 KB"),
        (1535, "1.4 KB"),
        (256 * 1024, "256 KB"),
        (int(12.5 * 1024 * 1024), "12.5 MB"),
        (3 * 1024**3, "3.0 GB"),
        (2048 * 1024**3, "2048 GB"),
    ],
)
def test_size_text(size, text):
    assert size_text(size) == text


@pytest.mark.parametrize(
    ("code", "line"),
    [
        (errno.ENOSPC, f"RUNNER_DATA_DIR: no space left on {DATA}; {FIX_SPACE}"),
        (errno.EDQUOT, f"RUNNER_DATA_DIR: no space left on {DATA}; {FIX_SPACE}"),
        (
            errno.EROFS,
            f"RUNNER_DATA_DIR: cannot write to {DATA} (read-only file system); {FIX_READ_ONLY}",
        ),
        # A path that is a file (no such file here: the path itself is named).
        (
            errno.EEXIST,
            f"RUNNER_DATA_DIR: {DATA} is a file, not a directory; remove it or set "
            "RUNNER_DATA_DIR to a directory",
        ),
        # Anything else keeps the words the runner always had.
        (
            errno.EACCES,
            f"RUNNER_DATA_DIR: cannot write to {DATA} (whatever the OS says); run from a "
            "writable directory or set RUNNER_DATA_DIR to one",
        ),
    ],
    ids=["ENOSPC", "EDQUOT", "EROFS", "file", "other"],
)
def test_data_dir_problem(code, line):
    error = OSError(code, {errno.EEXIST: "File exists"}.get(code, "whatever the OS says"))
    assert data_dir_problem(DATA, error) == line


def test_write_failed_names_what_did_not_happen():
    full = OSError(errno.ENOSPC, "No space left on device")
    assert write_failed("/d/queue", full, "the message was not queued") == (
        f"no space left on /d/queue: the message was not queued; {FIX_SPACE}"
    )
    read_only = OSError(errno.EROFS, "Read-only file system")
    assert write_failed("/d/results", read_only, "the result was not stored") == (
        f"cannot write to /d/results (read-only file system): the result was not stored; "
        f"{FIX_READ_ONLY}"
    )
    assert write_failed("/d", OSError(errno.EACCES, "Permission denied")) is None


@pytest.mark.parametrize(
    ("free", "line"),
    [
        (
            0,
            f"RUNNER_DATA_DIR: no space left on {DATA} (0 bytes free; the local default keeps "
            f"its task queue and results there and needs at least {MIN_FREE_MB} MB); {FIX_SPACE}",
        ),
        (
            MIN_FREE_BYTES - 1,
            f"RUNNER_DATA_DIR: no space left on {DATA} (15.9 MB free; the local default keeps "
            f"its task queue and results there and needs at least {MIN_FREE_MB} MB); {FIX_SPACE}",
        ),
        (MIN_FREE_BYTES, None),
        (50 * 1024**3, None),
    ],
    ids=["full", "just-under", "minimum", "plenty"],
)
def test_free_space_problem(free, line):
    assert free_space_problem(DATA, free) == line


TRACEBACK = "Traceback (most recent call last):\n  ...\ndjango.db.utils.OperationalError: {}\n"


@pytest.mark.parametrize(
    ("error", "database", "line"),
    [
        (
            "database or disk is full",
            "/srv/app/db.sqlite3",
            "migrations failed: no space left for the database /srv/app/db.sqlite3 ('database "
            "or disk is full', see the migrate lines above); free some space on /srv/app or put "
            "the database on a disk with room",
        ),
        (
            "could not extend file: No space left on device",  # PostgreSQL's server
            None,
            "migrations failed: no space left for the database ('No space left on device', see "
            "the migrate lines above); free some space on its disk or put the database on a "
            "disk with room",
        ),
        (
            "unable to open database file",
            "/ro/db.sqlite3",
            "migrations failed: cannot write the database /ro/db.sqlite3 ('unable to open "
            "database file', see the migrate lines above); its folder is read-only or missing: "
            "put the database on a writable disk",
        ),
        (
            "attempt to write a readonly database",
            None,
            "migrations failed: cannot write the database ('attempt to write a readonly "
            "database', see the migrate lines above); its folder is read-only or missing: put "
            "the database on a writable disk",
        ),
        ("no such table: app_heartbeat", "/srv/app/db.sqlite3", None),
    ],
    ids=["sqlite-full", "server-full", "sqlite-read-only", "sqlite-readonly-db", "other"],
)
def test_migrate_failure(error, database, line):
    assert migrate_failure(TRACEBACK.format(error), database) == line
