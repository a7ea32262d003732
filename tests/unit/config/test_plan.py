"""Table-driven tests of the plan (which programs, which commands) and of its rendering
into a supervisord configuration, checked by supervisor's own parser."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
from supervisor.options import ServerOptions

from runner.config.plan import Plan, make_plan
from runner.config.project import Project, find_project
from runner.config.settings import load_settings
from runner.config.supervisord_conf import (
    GROUP,
    command_line,
    environment_line,
    render_supervisord_conf,
)

CWD = Path("/srv/project")
PROJECT = Project("app.settings", "manage.py", "app", "top package of app.settings")


def plan_for(environ: dict[str, str]) -> Plan:
    return make_plan(load_settings(environ, CWD), PROJECT)


@pytest.mark.parametrize(
    ("environ", "programs"),
    [
        ({}, ("web", "worker")),
        ({"BEAT_MODE": "separate"}, ("web", "worker", "beat")),
        ({"RUN_BEAT": "false"}, ("web", "worker")),
        ({"RUN_WORKER": "false"}, ("web", "beat")),
        ({"RUN_WEB": "false"}, ("worker",)),
        ({"RUN_WEB": "false", "RUN_BEAT": "false"}, ("worker",)),
        ({"RUN_WEB": "false", "RUN_WORKER": "false"}, ("beat",)),
        ({"RUN_WORKER": "false", "RUN_BEAT": "false"}, ("web",)),
    ],
)
def test_component_flags_choose_the_programs(environ, programs):
    """RUN_WEB/RUN_WORKER/RUN_BEAT and BEAT_MODE decide which programs run."""
    assert plan_for(environ).program_names == programs


def test_embedded_beat_rides_in_the_worker():
    """By default beat runs inside the worker (-B): one Python process fewer."""
    worker = plan_for({}).program("worker")
    assert "--beat" in worker.command
    assert "--beat" not in plan_for({"RUN_BEAT": "false"}).program("worker").command


def test_beat_without_worker_is_separate_and_says_so():
    """With RUN_WORKER=false beat becomes its own program and the plan notes why."""
    plan = plan_for({"RUN_WORKER": "false"})
    assert plan.program("beat").command[1:7] == (
        "-m", "runner.worker.entry", "-A", "app", "--quiet", "beat"
    )  # fmt: skip
    assert any("RUN_WORKER is false" in note for note in plan.notes)


def test_celerys_banner_gives_way_to_one_start_line_except_in_debug():
    """Each program's summary goes in the runner's start line; Celery's banner only with
    LOG_LEVEL=debug."""
    plan = plan_for({})
    assert [(p.name, p.summary) for p in plan.programs] == [
        ("web", "gunicorn 1 worker x 2 threads"),
        ("worker", "celery threads pool x 2, beat embedded"),
    ]
    assert "--quiet" in plan.program("worker").command
    debug = plan_for({"LOG_LEVEL": "debug", "BEAT_MODE": "separate"})
    assert "--quiet" not in debug.program("worker").command
    assert "--quiet" not in debug.program("beat").command
    assert debug.program("beat").summary == "celery beat"


def option(command: tuple[str, ...], name: str) -> str:
    return command[command.index(name) + 1]


def test_default_commands_give_the_seed_capacity_in_fewer_processes():
    """The seed's capacity (2 requests, 2 tasks, beat) on 512 MB: one Gunicorn worker with 2
    threads on $PORT, a threads pool of 2, beat embedded."""
    plan = plan_for({"PORT": "10000"})
    web = plan.program("web").command
    assert web[:4] == (sys.executable, "-m", "gunicorn", "runner.web.wsgi:application")
    assert option(web, "--bind") == "0.0.0.0:10000"
    assert (option(web, "--worker-class"), option(web, "--workers"), option(web, "--threads")) == (
        "runner.web.read_ahead.ReadAheadThreadWorker",
        "1",
        "2",
    )
    assert "--preload" in web
    worker = plan.program("worker").command
    assert "--pool=threads" in worker and "--concurrency=2" in worker
    assert "--without-gossip" in worker and "--without-mingle" in worker
    assert plan.program("web").processes == 2 and plan.program("worker").processes == 2


def test_overrides_are_capacity_not_processes():
    """WEB_CONCURRENCY and CELERY_CONCURRENCY set concurrent requests and tasks."""
    plan = plan_for({"WEB_CONCURRENCY": "6", "CELERY_CONCURRENCY": "4"})
    web = plan.program("web")
    assert (option(web.command, "--workers"), option(web.command, "--threads")) == ("2", "3")
    assert web.processes == 3
    assert "--concurrency=4" in plan.program("worker").command


def test_prefork_recycles_children_above_the_inherited_peak():
    """With prefork, children are recycled by task count and by memory above the RSS a
    child inherits from its parent (else every task would recycle it)."""
    worker = plan_for({"MEMORY_BUDGET_MB": "1024"}).program("worker")
    assert "--pool=prefork" in worker.command and worker.processes == 4
    limit = next(a for a in worker.command if a.startswith("--max-memory-per-child="))
    assert int(limit.split("=")[1]) > 80 * 1024
    assert "--max-tasks-per-child=100" in worker.command


def test_shutdown_fits_inside_the_grace():
    """Programs get the grace to stop; the warm phases end STOP_MARGIN_SECONDS earlier."""
    plan = plan_for({"SHUTDOWN_GRACE_SECONDS": "20"})
    assert {p.stop_wait_seconds for p in plan.programs} == {20}
    web = plan.program("web").command
    assert web[web.index("--graceful-timeout") + 1] == "15"
    assert dict(plan.program("worker").environment) == {
        "RUNNER_WARM_SHUTDOWN_SECONDS": "15",
        "RUNNER_NICENESS": "10",
        "RUNNER_PARENT_DEATH_SIGNAL": "USR2",  # supervisord killed: give back, exit
        "RUNNER_RESTART_AFTER_TASKS": "100",  # threads: --max-tasks-per-child's meaning
        "RUNNER_WORKER_SHARE_MB": "210",  # threads: checked after each task
    }
    worker = plan.program("worker")
    # Pool children must not get SIGTERM straight from supervisord (tasks killed mid-way).
    assert (worker.stop_as_group, worker.kill_as_group) == (False, True)


def test_broker_is_masked_and_local_default_is_announced():
    """The plan shows the broker without its password; without Redis it says local default."""
    plan = plan_for({"REDIS_URL": "rediss://default:s3cret@h:6380"})
    assert plan.broker == "rediss://default:***@h:6380" and not plan.local_default
    local = plan_for({})
    assert local.local_default and any("local default" in n for n in local.notes)


def test_unverified_tls_is_said_plainly():
    """rediss:// without a CA is encrypted but unverified, and the plan says how to fix it."""
    plan = plan_for({"REDIS_URL": "redis://default:x@h:1", "REQUIRE_REDIS_SSL": "true"})
    assert any("NOT verified" in n and "REDIS_SSL_CA_CERTS" in n for n in plan.notes)
    assert any("upgraded" in n for n in plan.notes)


def test_no_migrations_when_disabled():
    """RUN_MIGRATIONS=false leaves migrate out of the plan."""
    assert plan_for({"RUN_MIGRATIONS": "false"}).migrate is None
    assert plan_for({}).migrate[1:] == ("-m", "django", "migrate", "--noinput")


# --- project discovery -------------------------------------------------------------------

SEED_MANAGE_PY = """
import os, sys
def main():
    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings.development')
"""


@pytest.mark.parametrize(
    ("settings_module", "celery_app", "manage_py", "expected"),
    [
        (
            None,
            None,
            SEED_MANAGE_PY,
            Project(
                "config.settings.development",
                "manage.py",
                "config",
                "top package of config.settings.development",
            ),
        ),
        (
            "config.settings.production",
            "config",
            SEED_MANAGE_PY,
            Project("config.settings.production", "DJANGO_SETTINGS_MODULE", "config", "CELERY_APP"),
        ),
        (
            "app.settings",
            None,
            None,
            Project("app.settings", "DJANGO_SETTINGS_MODULE", "app", "top package of app.settings"),
        ),
    ],
)
def test_find_project(settings_module, celery_app, manage_py, expected):
    """The project comes from the variables, else from manage.py, like manage.py and celery -A."""
    assert find_project(settings_module, celery_app, manage_py) == expected


def test_no_project_is_a_clear_error():
    """Without DJANGO_SETTINGS_MODULE and manage.py the runner says where to run it."""
    from runner.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        find_project(None, None, None)
    assert "run from your project's root" in caught.value.lines()[0]


# --- rendering ---------------------------------------------------------------------------


def parse_conf(text: str, tmp_path: Path) -> ServerOptions:
    conf = tmp_path / "supervisord.conf"
    conf.write_text(text)
    options = ServerOptions()
    options.realize(["-c", str(conf)])
    return options


@pytest.mark.parametrize("environ", [{}, {"BEAT_MODE": "separate"}, {"RUN_WEB": "false"}])
def test_rendered_config_is_valid_for_supervisor(environ, tmp_path: Path):
    """supervisor's own parser accepts the config and finds one group with our programs."""
    plan = plan_for(environ)
    options = parse_conf(render_supervisord_conf(plan, tmp_path), tmp_path)
    assert options.nodaemon is True
    groups = {g.name: g for g in options.process_group_configs}
    assert list(groups) == [GROUP]
    programs = {p.name: p for p in groups[GROUP].process_configs}
    assert tuple(sorted(programs)) == tuple(sorted(plan.program_names))
    for program in plan.programs:
        parsed = programs[program.name]
        assert parsed.command == command_line(program.command).replace("%%", "%")
        assert parsed.stopwaitsecs == program.stop_wait_seconds
        assert parsed.stdout_events_enabled and parsed.stderr_events_enabled


def test_control_socket_is_private_and_no_inet_server(tmp_path: Path):
    """The control socket is a unix socket for the owner only; there is no TCP server."""
    options = parse_conf(render_supervisord_conf(plan_for({}), tmp_path), tmp_path)
    (server,) = options.server_configs
    assert server["family"] != 2  # AF_INET
    assert server["file"] == str(tmp_path / "supervisor.sock")
    assert server["chmod"] == 0o700


def test_percent_and_spaces_survive_escaping(tmp_path: Path):
    """A '%' and a space in a path reach the program unchanged (supervisor issue 291)."""
    weird = tmp_path / "data 100%"
    plan = make_plan(load_settings({"RUNNER_DATA_DIR": str(weird)}, CWD), PROJECT)
    options = parse_conf(render_supervisord_conf(plan, tmp_path), tmp_path)
    worker = next(p for p in options.process_group_configs[0].process_configs if p.name == "worker")
    assert f"--schedule={weird / 'celerybeat-schedule'}" in shlex.split(worker.command)


def test_environment_line_round_trips_through_supervisor():
    """environment= values with commas, spaces and % are parsed back as written."""
    from supervisor.datatypes import dict_of_key_value_pairs

    pairs = (("A", "web,worker"), ("B", "with space"), ("C", "100%"))
    line = environment_line(pairs).replace("%%", "%")
    assert dict_of_key_value_pairs(line) == dict(pairs)
    with pytest.raises(ValueError):
        environment_line((("D", 'say "hi"'),))


@pytest.mark.parametrize(
    ("environ", "niceness"),
    [
        ({"BEAT_MODE": "separate"}, {"worker": "10", "beat": "10"}),
        # Without the web in the instance there is nothing to give way to.
        ({"BEAT_MODE": "separate", "RUN_WEB": "false"}, {"worker": None, "beat": None}),
    ],
)
def test_background_components_give_way_to_the_web(environ, niceness):
    """The worker and beat run at a lower CPU priority when the web shares the instance."""
    plan = plan_for(environ)
    if "web" in plan.program_names:
        assert "RUNNER_NICENESS" not in dict(plan.program("web").environment)
    for name, value in niceness.items():
        assert dict(plan.program(name).environment).get("RUNNER_NICENESS") == value


def test_beat_sends_from_one_instance_only_with_redis():
    """With Redis several instances may share the broker, so every beat, embedded or separate,
    takes the leader lock's scheduler (runner.worker.beat_leader); the local default is one instance
    and keeps the project's scheduler."""
    redis = {"REDIS_URL": "redis://default:x@redis.example:6379"}
    leader = "--scheduler=runner.worker.beat_leader:LeaderScheduler"
    assert leader in plan_for(redis).program("worker").command
    separate = plan_for(redis | {"BEAT_MODE": "separate"})
    assert leader in separate.program("beat").command
    assert leader not in separate.program("worker").command
    assert leader not in plan_for(redis | {"RUN_BEAT": "false"}).program("worker").command
    for local in ({}, {"BEAT_MODE": "separate"}):
        assert all(leader not in program.command for program in plan_for(local).programs)


def test_max_tasks_per_child_means_something_with_every_pool():
    """Prefork gets Celery's flag; threads a graceful restart after that many tasks, said."""
    threads = plan_for({"CELERY_MAX_TASKS_PER_CHILD": "7", "CELERY_POOL": "threads"})
    assert dict(threads.program("worker").environment)["RUNNER_RESTART_AFTER_TASKS"] == "7"
    assert not any("--max-tasks-per-child" in arg for arg in threads.program("worker").command)
    # How the setting is read, said by `plan`, not at every start.
    details = threads.details
    assert any("CELERY_MAX_TASKS_PER_CHILD=7 restarts the whole worker" in n for n in details)
    assert not any("CELERY_MAX_TASKS_PER_CHILD" in n for n in threads.notes)
    prefork = plan_for({"CELERY_MAX_TASKS_PER_CHILD": "7", "CELERY_POOL": "prefork"})
    assert "--max-tasks-per-child=7" in prefork.program("worker").command
    assert "RUNNER_RESTART_AFTER_TASKS" not in dict(prefork.program("worker").environment)


def test_tls_variables_beside_a_plain_url_are_said_to_be_unused():
    plain = plan_for({"REDIS_URL": "redis://:pw@h:6379", "REDIS_SSL_CERT_REQS": "required"})
    assert any(
        n.startswith("REDIS_SSL_CERT_REQS is set, but every Redis URL is redis:// (no TLS)")
        for n in plain.notes
    )
    upgraded = plan_for(
        {
            "REDIS_URL": "redis://:pw@h:6379",
            "REDIS_SSL_CERT_REQS": "required",
            "REQUIRE_REDIS_SSL": "true",
        }
    )
    assert not any("(no TLS)" in n for n in upgraded.notes)
    assert not any("(no TLS)" in n for n in plan_for({"REDIS_URL": "redis://:pw@h:6379"}).notes)
