"""Throwaway PostgreSQL databases on the machine's server (127.0.0.1:5432, trust auth).

``scripts/test`` makes sure the server runs (it starts the cluster when it does not); each
test that needs a shared database gets one of its own, dropped at the end.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

HOST = "127.0.0.1"
PORT = 5432
USER = "postgres"
COMMAND_TIMEOUT = 60.0
"""Seconds one createdb/dropdb may take."""


def _run(*argv: str) -> None:
    subprocess.run(
        [*argv, "-h", HOST, "-p", str(PORT), "-U", USER],
        check=True,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )


@contextmanager
def temporary_database(prefix: str = "runner_test") -> Iterator[str]:
    """Create an empty database, yield its ``postgres://`` URL, drop it (even if in use)."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    _run("createdb", name)
    try:
        yield f"postgres://{USER}@{HOST}:{PORT}/{name}"
    finally:
        _run("dropdb", "--force", name)


def query(url: str, sql: str) -> list[tuple]:
    """The rows of one SQL query against the database at ``url`` (psycopg, the demo's driver)."""
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as connection:
        return connection.execute(sql).fetchall()


def refuse_connections(url: str) -> None:
    """Make the database at ``url`` unreachable, as a database that went down is: new
    connections refused, the open ones ended (dropping it at the end still works)."""
    name = url.rsplit("/", 1)[1]
    _run(
        "psql",
        "-d",
        "postgres",
        "-c",
        f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
        "-c",
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
    )
