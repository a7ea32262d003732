"""Plan -> supervisord.conf text. Pure; all escaping for supervisord happens here.

supervisord expands ``%(name)s`` in every value, so a literal ``%`` must be doubled, and it
splits ``command=`` like a shell, so arguments are shell-quoted. Both happen in the two
helpers below and nowhere else.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from runner.config.plan import Plan, Program

GROUP = "runner"
SOCKET_NAME = "supervisor.sock"
# The memory limits (runner.supervise.watchdog.Limits) for supervisord's process, beside the config.
LIMITS_NAME = "memory-limits.json"


def percent_escape(value: str) -> str:
    """Escape a value for supervisord's ``%(name)s`` expansion."""
    return value.replace("%", "%%")


def command_line(argv: tuple[str, ...]) -> str:
    """A supervisord ``command=`` value running exactly ``argv``."""
    return percent_escape(shlex.join(argv))


def environment_line(pairs: tuple[tuple[str, str], ...]) -> str:
    """A supervisord ``environment=`` value: KEY="value",...

    supervisord's parser keeps quotes as they are and strips them at the ends, with no
    escape for a quote inside: such a value cannot be passed, so it is refused here.
    """
    for key, value in pairs:
        if '"' in value:
            raise ValueError(f"{key}: a double quote cannot be passed through supervisord")
    return percent_escape(",".join(f'{key}="{value}"' for key, value in pairs))


def _section(name: str, options: dict[str, object]) -> str:
    lines = [f"[{name}]"]
    for key, value in options.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def _program(program: Program, priority: int) -> str:
    options: dict[str, object] = {
        "command": command_line(program.command),
        "priority": priority,
        "autostart": True,
        "autorestart": True,
        "startsecs": program.start_seconds,
        "startretries": program.start_retries,
        "stopsignal": program.stop_signal,
        "stopwaitsecs": program.stop_wait_seconds,
        "stopasgroup": program.stop_as_group,
        "killasgroup": program.kill_as_group,
        # Output becomes events that runner.supervise.supervisord relays to stdout, each line
        # prefixed with the component's name: no log files.
        "stdout_logfile": "NONE",
        "stderr_logfile": "NONE",
        "stdout_events_enabled": True,
        "stderr_events_enabled": True,
    }
    if program.environment:
        options["environment"] = environment_line(program.environment)
    return _section(f"program:{program.name}", options)


def render_supervisord_conf(plan: Plan, run_dir: Path) -> str:
    """The whole configuration for ``plan``, with its socket and files in ``run_dir``."""
    socket = run_dir / SOCKET_NAME
    sections = [
        _section(
            "unix_http_server",
            {
                "file": percent_escape(str(socket)),
                # Owner only: the socket controls every process of the service.
                "chmod": "0700",
            },
        ),
        _section(
            "supervisord",
            {
                "nodaemon": True,
                # nodaemon already logs to stdout; a log file would only duplicate it.
                "logfile": "/dev/null",
                "logfile_maxbytes": 0,
                "loglevel": "info",  # runner.supervise.words drops the routine messages
                "pidfile": percent_escape(str(run_dir / "supervisord.pid")),
                "childlogdir": percent_escape(str(run_dir)),
                # supervisord's own default is 022: every program would create files others
                # can read (the local queue, results, SQLite). See runner.supervise.data_dir.
                "umask": "077",
            },
        ),
        _section(
            "rpcinterface:supervisor",
            {
                "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface",
            },
        ),
        _section("supervisorctl", {"serverurl": percent_escape(f"unix://{socket}")}),
    ]
    sections += [_program(p, priority=100) for p in plan.programs]
    # One group: on shutdown supervisord stops a group's programs together, so their stop
    # times do not add up (separate programs are stopped one after another).
    sections.append(
        _section(
            f"group:{GROUP}",
            {
                "programs": ",".join(plan.program_names),
                "priority": 100,
            },
        )
    )
    return "\n".join(sections)
