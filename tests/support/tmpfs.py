"""Real small file systems for disk-fault tests: a tmpfs mounted read-only, or filled up.

The tests run as root, and root writes through any chmod: only a read-only mount stops it.
A full disk is a tmpfs of a few hundred KB with a file that takes all of it. Mounting needs
root (CAP_SYS_ADMIN); where it is not allowed, TmpfsMounts.mount() skips the test and says
why. Every mount is undone by path in teardown, also when the test failed.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

FILLER_NAME = "filler"
"""The file fill() grows until the disk is full; free() deletes it."""

COMMAND_TIMEOUT = 30.0
"""Seconds a mount or umount command may take."""

CHUNK = b"\0" * 65536


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)


def _skip_outside_ci(reason: str) -> None:
    """Skip on a developer's machine that cannot mount; fail in CI, which runs as root and
    must exercise the disk faults (a skip there would hide a broken mount)."""
    if os.environ.get("CI"):
        pytest.fail(f"CI cannot run the disk-fault tests: {reason}")
    pytest.skip(reason)


class TmpfsMounts:
    """The tmpfs mounts of one test; unmount_all() undoes them, last first."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def mount(self, path: Path, size_kb: int) -> Path:
        """Mount a writable tmpfs of ``size_kb`` KB on ``path`` (created); skip if not allowed."""
        if os.geteuid() != 0:
            _skip_outside_ci("mounting a tmpfs needs root (and root's writes ignore chmod)")
        path.mkdir(parents=True, exist_ok=True)
        result = _run("mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path))
        if result.returncode != 0:
            _skip_outside_ci(f"mount -t tmpfs is not permitted here: {result.stderr.strip()}")
        self.paths.append(path)
        return path

    def remount_read_only(self, path: Path) -> None:
        """Make the tmpfs on ``path`` read-only, keeping what was written to it."""
        result = _run("mount", "-o", "remount,ro", str(path))
        assert result.returncode == 0, f"remount,ro {path} failed: {result.stderr}"

    def unmount_all(self) -> None:
        """Unmount every tmpfs of the test by its path; lazily when something still uses it."""
        failures = []
        while self.paths:
            path = self.paths.pop()
            if _run("umount", str(path)).returncode != 0:
                # Busy (a process we could not see still has a file open): detach it now,
                # the kernel frees it when the last user goes; never leave it mounted.
                lazy = _run("umount", "-l", str(path))
                if lazy.returncode != 0:
                    failures.append(f"{path}: {lazy.stderr.strip()}")
        assert not failures, "could not unmount: " + "; ".join(failures)


def fill(path: Path) -> Path:
    """Write zeros into ``path/filler`` until the disk is full (ENOSPC); return the file."""
    filler = path / FILLER_NAME
    with filler.open("ab", buffering=0) as out:
        while True:
            try:
                if out.write(CHUNK) < len(CHUNK):
                    continue  # the last pages: the next write raises ENOSPC
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                return filler


def free(path: Path) -> None:
    """Delete the file fill() wrote: the disk has its space back."""
    (path / FILLER_NAME).unlink()
