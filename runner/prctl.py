"""The Linux process controls the runner uses (prctl(2)), shared by the supervising process
and the Celery worker: a process's kernel name, and the signal it gets when its parent dies.

Elsewhere (macOS, say) both are no-ops: names are cosmetic there, and the runner's
production home is Linux.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies
PR_SET_NAME = 15  # prctl(2): set the calling thread's name (the process's comm)
COMM_LENGTH = 15  # bytes the kernel keeps of that name
# Exit status of a child whose parent died before it could ask to follow it.
EXIT_ORPHANED = 1


def _prctl(option: int, value: int | bytes) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_process_name(name: str) -> None:
    """Set this process's kernel name (what ``ps -o comm`` and psutil's name() show)."""
    _prctl(PR_SET_NAME, name.encode()[:COMM_LENGTH])


def die_with_parent(signal_number: int, parent_pid: int) -> None:
    """Have the kernel send ``signal_number`` to this process when its parent dies; if the
    parent (``parent_pid``) is already gone, exit at once instead.

    The request survives ``execve`` and is cleared by ``fork``, so each process that must
    not outlive its parent asks for itself. The check after it closes the window in which
    the parent died before the request was made.
    """
    if not _prctl(PR_SET_PDEATHSIG, signal_number):
        return
    if os.getppid() != parent_pid:
        os._exit(EXIT_ORPHANED)
