"""The local default's data directory: one runner at a time, nobody else's, private files.

Real runners as subprocesses: a second runner on a data directory in use refuses with one
line; a directory others may write to, or that another user owns, is refused before
anything starts; what a running service creates there (queue and result files, the SQLite
database) is readable by its user only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runner.errors import EXIT_BAD_CONFIG
from tests.support.ports import free_port
from tests.support.runner import send_add, start_runner, stop_and_check, wait_http_ok
from tests.support.timeouts import START_TIMEOUT

pytestmark = pytest.mark.e2e

REFUSED_TIMEOUT = 60  # a refused start imports the project, nothing more


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "error:" in line]


def test_a_second_runner_on_the_same_data_directory_refuses_in_one_line(runner_env, tmp_path):
    first = start_runner(runner_env, tmp_path)
    with first:
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, first)
        second = start_runner(runner_env | {"PORT": str(free_port())}, tmp_path)
        with second:
            assert second.wait(timeout=REFUSED_TIMEOUT) == EXIT_BAD_CONFIG
        data = runner_env["RUNNER_DATA_DIR"]
        assert error_lines(second.output()) == [
            f"runner | error: RUNNER_DATA_DIR='{data}': is in use by another runner "
            f"(pid {first.pid}): two on one data directory would both run beat and share one "
            "local queue; give this one its own RUNNER_DATA_DIR"
        ]
        assert "starting" not in second.output().split("error:")[-1]
        # The first one is untouched: it still runs tasks, and its pointer is its own.
        assert send_add(runner_env) == "5"
        assert f'"pid": {first.pid}' in (Path(data) / "runner.json").read_text()

        # Private files: what the service created is this user's only.
        created = [Path(runner_env["DATABASE_URL"].removeprefix("sqlite:///"))]
        created += [path for path in Path(data).rglob("*")]
        assert created[1:], "the data directory is empty"
        loose = {
            str(path): oct(stat.S_IMODE(path.stat().st_mode))
            for path in created
            if path.exists() and stat.S_IMODE(path.stat().st_mode) & 0o077
        }
        assert loose == {}
        stop_and_check(first)
    # Freed with its holder: a new runner starts on it.
    third = start_runner(runner_env, tmp_path)
    with third:
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, third)
        stop_and_check(third)


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_data_directory_others_can_write_to_is_refused(runner_env, tmp_path, mode):
    data = tmp_path / "shared"
    data.mkdir()
    data.chmod(mode)
    runner = start_runner(runner_env | {"RUNNER_DATA_DIR": str(data)}, tmp_path)
    with runner:
        assert runner.wait(timeout=REFUSED_TIMEOUT) == EXIT_BAD_CONFIG
    assert error_lines(runner.output()) == [
        f"runner | error: RUNNER_DATA_DIR='{data}': is writable by others (mode "
        f"{mode:04o}), who could queue tasks that run as this user; chmod 700 {data} or use "
        "another"
    ]
    assert list(data.iterdir()) == []  # nothing was created in it


def test_a_data_directory_of_another_user_is_refused(runner_env, tmp_path):
    if os.geteuid() != 0:
        # CI runs as root and must exercise this: there a missing root is a failure.
        if os.environ.get("CI"):
            pytest.fail("CI must run as root to give a directory to another user")
        pytest.skip("giving a directory to another user needs root")
    data = tmp_path / "theirs"
    data.mkdir(mode=0o700)
    os.chown(data, 65534, 65534)  # nobody
    runner = start_runner(runner_env | {"RUNNER_DATA_DIR": str(data)}, tmp_path)
    with runner:
        assert runner.wait(timeout=REFUSED_TIMEOUT) == EXIT_BAD_CONFIG
    assert error_lines(runner.output()) == [
        f"runner | error: RUNNER_DATA_DIR='{data}': belongs to another user (uid 65534), who "
        "could queue tasks that run as this one; use a directory of your own"
    ]
