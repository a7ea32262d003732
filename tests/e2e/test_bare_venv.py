"""The runner as users install it: a venv with no test tools, the newest Python here, a
project nobody here wrote for the runner, run from a directory outside the checkout.

The project (tests/fixtures/first_steps) follows Celery's "First steps with Django" and
lists `Django celery redis`: celery without its `[redis]` extra. pytest brings `packaging`
to the suite's own venv, which kombu 5.7's Redis transport imports: a user's venv has it
only if the runner declares it (``kombu[redis]`` in pyproject.toml). And the combinations
the ranges must not allow are refused by pip, not met at the first task.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import wait_for
from tests.support.runner import (
    HOST_VARIABLES_REMOVED,
    REPO_ROOT,
    start_runner,
    stop_and_check,
    wait_http_ok,
)
from tests.support.timeouts import START_TIMEOUT

pytestmark = pytest.mark.e2e

PROJECT = REPO_ROOT / "tests" / "fixtures" / "first_steps"
INSTALL_TIMEOUT = 600
NEWEST_PYTHONS = ("3.13", "3.12")
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", ".venv-*", "__pycache__", "*.egg-info", "build", ".pytest_cache",
    ".ruff_cache", ".runner-data", "db.sqlite3",
)  # fmt: skip
PERIODIC = "Sending due task tick-every-2-seconds (demoapp.tasks.tick)"


def _works(python: str) -> bool:
    """A pyenv shim is on PATH for versions that are not active: only running it tells."""
    try:
        return (
            subprocess.run(
                [python, "-c", "import venv"], capture_output=True, timeout=30
            ).returncode
            == 0
        )
    except OSError:
        return False


def newest_python() -> str:
    """The newest Python 3.12+ here (pyenv's versions, or PATH), or the test fails in CI /
    skips (scripts/matrix finds its Pythons the same way)."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for minor in NEWEST_PYTHONS:
        candidates = [str(p) for p in sorted(root.glob(f"{minor}.*/bin/python"), reverse=True)]
        candidates += [found] if (found := shutil.which(f"python{minor}")) else []
        for candidate in candidates:
            if _works(candidate):
                return candidate
    if os.environ.get("CI"):
        pytest.fail("CI needs Python 3.12 or 3.13 (pyenv) for the bare-venv test")
    pytest.skip("no Python 3.12+ here")


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv of the newest Python with the runner and the project's own requirements, as a
    user installs them: `pip install <runner> -r requirements.txt`, nothing else."""
    where = tmp_path_factory.mktemp("bare")
    source = where / "runner-source"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_IN_A_CLONE)
    venv = where / "venv"
    subprocess.run([newest_python(), "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [
            str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
            "--disable-pip-version-check", str(source), "-r", str(PROJECT / "requirements.txt"),
        ],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    return venv


def venv_python(venv: Path, code: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_a_first_steps_project_runs_in_a_bare_venv(
    bare_venv: Path, runner_env, tmp_path: Path, redis_plain
):
    """No test tool in the venv, the project outside the checkout, its Celery settings its
    own (CELERY_BROKER_URL): `python -m runner check` says ok, the web answers, a task sent
    from the project's own app runs, beat sends the project's CELERY_BEAT_SCHEDULE."""
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=NOT_IN_A_CLONE)
    env = {k: v for k, v in runner_env.items() if k not in HOST_VARIABLES_REMOVED}
    env.pop("PYTHONPATH", None)
    env |= {
        "PORT": runner_env["PORT"],
        "RUNNER_DATA_DIR": str(tmp_path / "data"),
        "TMPDIR": str(tmp_path),
        "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        "CELERY_BROKER_URL": redis_plain.url(db=0),
        "CELERY_RESULT_BACKEND": redis_plain.url(db=1),
    }
    assert venv_python(
        bare_venv, "import importlib.util as u; print(u.find_spec('pytest') is None)", project, env
    ) == "True"  # fmt: skip
    where = venv_python(bare_venv, "import runner; print(runner.__file__)", project, env)
    assert Path(where).is_relative_to(bare_venv), where
    check = subprocess.run(
        [str(bare_venv / "bin" / "python"), "-m", "runner", "check"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    runner = start_runner(env, tmp_path, cwd=project, python=str(bare_venv / "bin" / "python"))
    with runner:
        wait_http_ok(f"http://127.0.0.1:{env['PORT']}/", START_TIMEOUT, runner)
        result = venv_python(
            bare_venv,
            "from proj.celery import app; "
            "print(app.send_task('demoapp.tasks.add', (2, 3)).get(timeout=60))",
            project,
            env,
        )
        assert result == "5", runner.output()[-3000:]
        wait_for(lambda: PERIODIC in runner.output(), 30, message=lambda: runner.output()[-3000:])
        assert "Traceback" not in runner.output(), runner.output()[-5000:]
        stop_and_check(runner)


@pytest.mark.parametrize(
    ("pins", "why"),
    [
        (("kombu==5.7.0", "redis==5.0.0"), "kombu 5.7's Redis transport needs redis-py 6.4+"),
        (("supervisor==4.2.0",), "supervisor 4.2 imports pkg_resources, gone on Python 3.12+"),
    ],
)
def test_combinations_that_cannot_work_are_refused_by_pip(pins, why, tmp_path: Path):
    """A user's pins that the runner cannot work with stop at `pip install`, not at the
    first task: pip's resolver refuses them (a dry run: nothing is installed)."""
    venv = tmp_path / "venv"
    subprocess.run([newest_python(), "-m", "venv", str(venv)], check=True, timeout=120)
    dry_run = subprocess.run(
        [
            str(venv / "bin" / "python"), "-m", "pip", "install", "--dry-run", "-q",
            "--disable-pip-version-check", str(REPO_ROOT), *pins,
        ],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT, cwd=tmp_path,
    )  # fmt: skip
    assert dry_run.returncode != 0, (why, dry_run.stdout[-2000:])
    assert "ResolutionImpossible" in dry_run.stderr or "conflict" in dry_run.stderr, (
        why,
        dry_run.stderr[-2000:],
    )
