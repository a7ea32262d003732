"""Where an import failure happened, as the error line names it (runner.supervise.discover)."""

from runner.supervise.discover import RUNNER_PACKAGE, _where


def test_the_projects_line_is_named_never_the_runners():
    """The demo keeps the runner inside the project's directory: a failure that passes
    through the runner's own code still names the project's line, not the runner's."""
    cwd = RUNNER_PACKAGE.parent
    runner_code: dict = {}
    exec(
        compile("def boom():\n    raise ValueError('x')\n", str(RUNNER_PACKAGE / "x.py"), "exec"),
        runner_code,
    )
    project_code = {"boom": runner_code["boom"]}
    exec(
        compile("def load():\n    boom()\n", str(cwd / "config" / "celery.py"), "exec"),
        project_code,
    )
    try:
        project_code["load"]()
    except ValueError as error:
        assert _where(error, cwd) == " at config/celery.py:2"
    else:
        raise AssertionError("no error raised")
