"""Tests of the memory budget: container limits read from cgroup fixture trees, and the
MEMORY_BUDGET_MB / container / default precedence with its margins."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config.budget import (
    DEFAULT_BUDGET_MB,
    MB,
    Budget,
    read_container_limit,
    resolve_budget,
)

V1_UNLIMITED = "9223372036854771712"  # what a cgroup v1 without a limit reports (4 KiB pages)


def make_tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path -> content) under ``root``; return root."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def v2(path: str, limits: dict[str, str]) -> tuple[dict[str, str], str]:
    """A cgroup v2 mount: cgroup.controllers at the root, memory.max per directory."""
    files = {"cgroup.controllers": "cpu io memory pids\n"}
    files |= {f"{directory}/memory.max".lstrip("/"): value for directory, value in limits.items()}
    return files, f"0::{path}\n"


def v1(path: str, limits: dict[str, str], line: str = "memory") -> tuple[dict[str, str], str]:
    """A cgroup v1 memory hierarchy at root/memory (next to other controllers)."""
    files = {"cpu/cgroup.procs": ""}
    files |= {
        f"memory/{directory}/memory.limit_in_bytes".replace("//", "/"): value
        for directory, value in limits.items()
    }
    proc = f"12:pids:/x\n4:{line}:{path}\n1:name=systemd:/x\n0::/x\n"
    return files, proc


@pytest.mark.parametrize(
    ("files", "proc", "expected"),
    [
        # cgroup v2, own cgroup limited (systemd service or Kubernetes pod).
        (*v2("/app.slice/web.service", {"app.slice/web.service": "536870912\n"}), 512 * MB),
        # cgroup v2 without a limit anywhere.
        (*v2("/app.slice/web.service", {"app.slice/web.service": "max\n", "": "max"}), None),
        # cgroup v2, nested: the parent's limit applies to the child cgroup too.
        (*v2("/a/b/c", {"a/b/c": "max", "a/b": "max", "a": "1073741824"}), 1024 * MB),
        # cgroup v2, both limited: the smaller one is the real limit.
        (*v2("/a/b", {"a/b": "805306368", "a": "1073741824"}), 768 * MB),
        # cgroup v2 in a container with a cgroup namespace: "0::/", limit at the mount.
        (*v2("/", {"": "268435456"}), 256 * MB),
        # cgroup v2 in a container without one: /proc names a host path absent here.
        (*v2("/docker/0123abcd", {"": "268435456"}), 256 * MB),
        # cgroup v1 with a limit on the own cgroup.
        (*v1("/docker/0123abcd", {"docker/0123abcd": "268435456", "": V1_UNLIMITED}), 256 * MB),
        # cgroup v1 without a limit: LONG_MAX rounded to a page.
        (*v1("/process_api/f614", {"process_api/f614": V1_UNLIMITED, "": V1_UNLIMITED}), None),
        # cgroup v1, nested: the parent's limit applies.
        (*v1("/a/b", {"a/b": V1_UNLIMITED, "a": "1073741824", "": V1_UNLIMITED}), 1024 * MB),
        # cgroup v1 with controllers co-mounted ("cpu,memory") on one line.
        (*v1("/job", {"job": "134217728"}, line="cpu,cpuacct,memory"), 128 * MB),
        # cgroup v1 in a container seeing its host path: the mount's own limit counts.
        (*v1("/kubepods/pod1/abc", {"": "402653184"}), 384 * MB),
        # A garbage value is ignored rather than trusted.
        (*v2("/a", {"a": "lots\n"}), None),
        # No cgroup file system at all (not Linux, or /sys not mounted).
        ({}, "", None),
    ],
)
def test_container_limit_from_cgroup_files(tmp_path, files, proc, expected):
    """read_container_limit finds the smallest limit on the process's cgroup path, v1 or v2."""
    root = make_tree(tmp_path / "cgroup", files)
    proc_cgroup = tmp_path / "proc-self-cgroup"
    proc_cgroup.write_text(proc)
    assert read_container_limit(root, proc_cgroup) == expected


def test_hybrid_mode_reads_the_v1_memory_hierarchy(tmp_path):
    """With v1 controllers and a v2 'unified' mount side by side, the v1 memory limit counts."""
    files, proc = v1("/svc", {"svc": "209715200"})
    files["unified/cgroup.controllers"] = ""
    root = make_tree(tmp_path / "cgroup", files)
    (tmp_path / "cgroup-file").write_text(proc)
    assert read_container_limit(root, tmp_path / "cgroup-file") == 200 * MB


def test_missing_proc_file_falls_back_to_the_mount(tmp_path):
    """Without /proc/self/cgroup the limit of the mount itself is used."""
    files, _proc = v2("/", {"": "268435456"})
    root = make_tree(tmp_path / "cgroup", files)
    assert read_container_limit(root, tmp_path / "absent") == 256 * MB


@pytest.mark.parametrize(
    ("explicit", "container", "expected"),
    [
        # Nothing known: Render's free instance.
        (None, None, Budget(512, "default: no container limit found (Render free)", 52, 21)),
        # The container's limit, in whole MB.
        (None, 1024 * MB + 5, Budget(1024, "container memory limit (cgroup)", 103, 41)),
        # MEMORY_BUDGET_MB wins over the container's limit when it is lower.
        (300, 1024 * MB, Budget(300, "MEMORY_BUDGET_MB", 32, 16)),
        # Small budgets keep the minimum margins.
        (256, None, Budget(256, "MEMORY_BUDGET_MB", 32, 16)),
        (2048, None, Budget(2048, "MEMORY_BUDGET_MB", 205, 82)),
        # ...and above the container's limit it still wins, with a warning to read.
        (
            1024,
            512 * MB,
            Budget(
                1024,
                "MEMORY_BUDGET_MB",
                103,
                41,
                (
                    "MEMORY_BUDGET_MB=1024 is above the container's limit of 512 MB: the "
                    "kernel will kill processes before the budget is reached; lower "
                    "MEMORY_BUDGET_MB to at most 512",
                ),
            ),
        ),
    ],
)
def test_budget_precedence_and_margins(explicit, container, expected):
    """An explicit MEMORY_BUDGET_MB wins, then the container's limit, then 512 MB."""
    assert resolve_budget(explicit, container) == expected


def test_lines_sit_between_the_plan_and_the_oom_line():
    """For 512 MB: shares up to 460 MB, restarts above 491 MB, the OOM line at 512 MB."""
    budget = resolve_budget(None, None)
    assert (budget.usable_mb, budget.last_resort_mb, budget.total_mb) == (
        460,
        491,
        DEFAULT_BUDGET_MB,
    )
