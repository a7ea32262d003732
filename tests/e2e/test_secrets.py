"""No password shows, whatever characters it holds: every URL variable, every command's output.

Each run gives the URL variables a password holding one of ``/ # ? @ : %`` unencoded (URLs
that may not parse) and reads everything ``python -m runner plan``, ``plan --json`` and
``check`` print, on both streams, for any piece of it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.ports import free_port
from tests.support.runner import HOST_VARIABLES_REMOVED, REPO_ROOT

pytestmark = pytest.mark.e2e

SECRET_TAIL = "ssw0rdXY"  # the part after the special character: it must never show
COMMANDS = (("plan",), ("plan", "--json"), ("check",))


def environment(tmp_path, special: str) -> dict[str, str]:
    password = f"Pa{special}{SECRET_TAIL}"
    base = {k: v for k, v in os.environ.items() if k not in HOST_VARIABLES_REMOVED}
    return base | {
        "PORT": str(free_port()),
        "RUNNER_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": f"rediss://default:{password}@127.0.0.1:{free_port()}",
        "CELERY_RESULT_BACKEND": f"redis://default:{password}@127.0.0.1:{free_port()}/1",
        "DATABASE_URL": f"postgres://app:{password}@127.0.0.1:5432/app",
        "RUNNER_STATUS_TOKEN": f"token-{password}-0123456789abcdef",
    }


@pytest.mark.parametrize("special", ["/", "#", "?", "@", ":", "%"])
def test_no_command_shows_any_part_of_a_password(tmp_path, special: str):
    env = environment(tmp_path, special)
    for command in COMMANDS:
        result = subprocess.run(
            [sys.executable, "-m", "runner", *command],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        shown = result.stdout + result.stderr
        assert result.returncode in (0, 1, 2), shown
        assert SECRET_TAIL not in shown, (command, shown)
        assert shown.strip(), command  # it did say something
