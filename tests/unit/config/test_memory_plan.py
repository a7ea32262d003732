"""Table-driven tests of the memory plan: shapes, floor, shares, refusal, for each budget."""

from __future__ import annotations

import pytest

from runner.config.budget import resolve_budget
from runner.config.memory_plan import WebShape, plan_memory, web_shape
from runner.errors import ConfigError

ALL = {"web_capacity": 2, "worker_capacity": 2, "beat": "embedded"}


@pytest.mark.parametrize(
    ("capacity", "shape"),
    [
        (1, WebShape(1, 1)),
        (2, WebShape(1, 2)),
        (4, WebShape(1, 4)),
        (5, WebShape(2, 3)),
        (8, WebShape(2, 4)),
        (9, WebShape(3, 3)),
    ],
)
def test_web_capacity_becomes_threads_first(capacity, shape):
    """Concurrent requests are served by threads, in as few processes as the GIL allows."""
    assert web_shape(capacity) == shape
    assert shape.workers * shape.threads >= capacity


@pytest.mark.parametrize(
    ("asked", "budget_mb", "pool"),
    [
        ("auto", 256, "threads"),
        ("auto", 512, "threads"),
        ("auto", 1023, "threads"),
        ("auto", 1024, "prefork"),
        ("auto", 2048, "prefork"),
        ("prefork", 256, "prefork"),
        ("prefork", 512, "prefork"),
        ("threads", 1024, "threads"),
        ("threads", 2048, "threads"),
    ],
)
def test_pool_is_threads_below_a_gigabyte_unless_asked(asked, budget_mb, pool):
    """One process for the tasks where memory is scarce, prefork's isolation from 1024 MB;
    CELERY_POOL wins either way. The worker restarts as a whole only with threads."""
    memory = plan_memory(resolve_budget(budget_mb, None), **ALL, pool=asked)
    assert memory.worker.pool == pool
    assert ("worker" in memory.graceful_restart) == (pool == "threads")
    assert (memory.worker.max_memory_per_child_kib is None) == (pool == "threads")
    assert sum(memory.shares_mb.values()) == memory.budget.usable_mb
    assert all(memory.shares_mb[name] >= memory.floor_mb[name] for name in memory.floor_mb)


@pytest.mark.parametrize(
    ("components", "programs"),
    [
        ({"web_capacity": 2, "worker_capacity": 2, "beat": "embedded"}, {"web", "worker"}),
        ({"web_capacity": 2, "worker_capacity": 2, "beat": "separate"}, {"web", "worker", "beat"}),
        ({"web_capacity": 2, "worker_capacity": None, "beat": None}, {"web"}),
        ({"web_capacity": None, "worker_capacity": 2, "beat": None}, {"worker"}),
        ({"web_capacity": None, "worker_capacity": None, "beat": "separate"}, {"beat"}),
    ],
)
@pytest.mark.parametrize("budget_mb", [256, 512, 1024, 2048])
def test_every_mix_gets_shares_for_its_programs(components, programs, budget_mb):
    """Each component mix gets a share per program and supervisord from 256 to 2048 MB,
    except all three with a separate beat on 256 MB, which is refused (227 MB > 224)."""
    if budget_mb == 256 and programs == {"web", "worker", "beat"}:
        with pytest.raises(ConfigError):
            plan_memory(resolve_budget(budget_mb, None), **components)
        return
    memory = plan_memory(resolve_budget(budget_mb, None), **components)
    assert set(memory.shares_mb) == programs | {"supervisord"}
    assert sum(memory.shares_mb.values()) == memory.budget.usable_mb


def test_default_512_plan():
    """The default plan on Render free: the whole arithmetic, as `runner plan` shows it."""
    memory = plan_memory(resolve_budget(None, None), **ALL)
    assert memory.web == WebShape(1, 2)
    assert memory.worker.pool == "threads" and memory.worker.concurrency == 2
    assert memory.floor_mb == {"supervisord": 18, "web": 75, "worker": 73}
    assert memory.shares_mb == {"web": 224, "worker": 218, "supervisord": 18}
    assert memory.graceful_restart == frozenset({"beat", "worker"})
    # Beat is a thread of the worker's main with the threads pool, a process with prefork.
    assert memory.lines[2] == "worker 73 MB = main 67 + 2 x 1 (pool thread) + beat thread 4"


def test_1024_plan_uses_prefork():
    """From 1024 MB, prefork: children recycled above what they inherit plus their share."""
    memory = plan_memory(resolve_budget(1024, None), **ALL)
    assert memory.worker.pool == "prefork" and memory.worker.concurrency == 2
    assert memory.floor_mb == {"supervisord": 18, "web": 75, "worker": 125}
    assert memory.lines[2] == "worker 125 MB = main 70 + 2 x 17 (prefork child) + beat 21"
    assert memory.graceful_restart == frozenset({"beat"})


def test_a_floor_above_the_budget_is_refused_with_the_arithmetic():
    """Too much capacity for the budget: MEMORY_BUDGET_MB is named, with the numbers."""
    with pytest.raises(ConfigError) as caught:
        plan_memory(
            resolve_budget(128, None),
            web_capacity=8,
            worker_capacity=8,
            beat="separate",
            pool="prefork",
        )
    (line,) = caught.value.lines()
    assert line.startswith("MEMORY_BUDGET_MB='128': too small: the processes need")
    assert "raise MEMORY_BUDGET_MB" in line
