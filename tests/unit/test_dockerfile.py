"""The Dockerfile: hadolint finds nothing, and it keeps what the runner needs as PID 1."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, its arguments) per line, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_hadolint_finds_nothing():
    """hadolint (the binary from requirements-dev.txt), every rule, every level."""
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.fail("hadolint is missing: bash scripts/test installs it (requirements-dev.txt)")
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, ""), done.stdout + done.stderr


def test_the_runner_is_pid_1_as_a_non_root_user_with_a_health_check():
    """Exec-form CMD running the runner (PID 1: signals and orphans are its own), a numeric
    non-root USER before it, a HEALTHCHECK on /healthz that needs no curl, SIGTERM to stop."""
    found = instructions()
    words = [word for word, _ in found]
    assert json.loads(dict(found)["CMD"]) == ["python", "-m", "runner"]
    user = [args for word, args in found if word == "USER"]
    assert user and user[-1].isdigit() and user[-1] != "0"
    assert words.index("USER") < words.index("CMD")
    health = dict(found)["HEALTHCHECK"]
    assert "/healthz" in health and "curl" not in health and "wget" not in health
    assert dict(found)["STOPSIGNAL"] == "SIGTERM"
    # Dependencies before the code: a code change does not reinstall them.
    copies = [args for word, args in found if word == "COPY"]
    assert copies[0].startswith("requirements.txt")
