"""The memory emergency's rule: a task running at two of them is not run a third time."""

from __future__ import annotations

import json
from pathlib import Path

from runner.worker.memory_emergency import (
    FORGET_AFTER_SECONDS,
    MAX_EMERGENCIES,
    not_to_run,
    read_suspects,
    record_suspects,
)

NOW = 1_000_000.0


def test_a_task_running_at_two_emergencies_is_not_run_again(tmp_path: Path):
    """Counted per task id across emergencies (each a new worker); at two it is out."""
    path = tmp_path / "memory-suspects.json"
    first = record_suspects(path, [("a", "big.task"), ("b", "small.task")], NOW)
    assert not_to_run(first) == {}
    second = record_suspects(path, [("a", "big.task")], NOW + 30)
    assert MAX_EMERGENCIES == 2
    assert not_to_run(second) == {"a": "big.task"}
    assert read_suspects(path, NOW + 31) == second  # written for the next worker
    assert json.loads(path.read_text())["b"]["count"] == 1


def test_old_or_broken_records_are_forgotten(tmp_path: Path):
    """An entry a day old no longer counts; an unreadable file counts as none."""
    path = tmp_path / "memory-suspects.json"
    record_suspects(path, [("a", "big.task")], NOW)
    record_suspects(path, [("a", "big.task")], NOW)
    assert read_suspects(path, NOW + FORGET_AFTER_SECONDS + 1) == {}
    path.write_text("{not json")
    assert read_suspects(path, NOW) == {}
    assert record_suspects(path, [("c", "t")], NOW) == {"c": {"name": "t", "count": 1, "at": NOW}}
