"""The local broker and result files (runner.worker.local_store): written whole or not at all, and a
full disk is an error that says so. The disk is simulated: ``open`` creates the file, as a
full disk does, then fails with ENOSPC (tests/e2e/test_disk_faults.py fills a real one)."""

from __future__ import annotations

import builtins
import errno
import json
import os
import tempfile
from pathlib import Path
from queue import Empty

import pytest
from celery import Celery
from celery.exceptions import ImproperlyConfigured
from kombu import Connection
from kombu.exceptions import OperationalError

from runner.config.disk import FIX_SPACE
from runner.worker import local_store
from runner.worker.local_store import QueueWriteError, ResultFiles, ResultWriteError, install


def failing_open(code: int):
    """An ``open`` that leaves the (empty) file behind, then fails like a full disk."""

    def fake_open(path, mode="r", *args, **kwargs):
        builtins.open(path, mode, *args, **kwargs).close()
        raise OSError(code, errno.errorcode[code])

    return fake_open


@pytest.fixture
def channel(tmp_path: Path):
    install()
    options = {
        "data_folder_in": str(tmp_path / "queue"),
        "data_folder_out": str(tmp_path / "queue"),
        "control_folder": str(tmp_path / "control"),
        "processed_folder": str(tmp_path / "staging"),
    }
    for folder in ("queue", "control", "staging"):
        (tmp_path / folder).mkdir()
    with Connection("filesystem://", transport_options=options) as connection:
        yield connection.default_channel


def test_filesystem_urls_use_the_runners_classes(tmp_path: Path, channel):
    """After install(), the usual URLs give these classes: nothing else changes for Celery."""
    assert isinstance(channel, local_store.Channel)
    app = Celery(set_as_current=False, backend=f"file://{tmp_path}")
    assert isinstance(app.backend, ResultFiles)


def test_a_queued_message_reads_back(channel):
    """The message is where kombu's own reader looks for it, whole."""
    channel._put("celery", {"body": "hello"})
    assert channel._get("celery") == {"body": "hello"}


def test_messages_are_taken_in_order_through_the_staging_folder_never_tmp(
    tmp_path: Path, channel, monkeypatch
):
    """Each message once; nothing passes through the system's temporary directory
    (kombu's own transport moves each message there)."""
    elsewhere = tmp_path / "system-tmp"
    elsewhere.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(elsewhere))
    moved_to: list[str] = []
    real_rename = os.rename
    monkeypatch.setattr(
        os, "rename", lambda a, b: (moved_to.append(os.path.dirname(b)), real_rename(a, b))[1]
    )
    for n in range(3):
        channel._put("celery", {"n": n})
    channel._put("other", {"n": "other"})
    # Each once (the order is by millisecond of sending, as kombu names them; these share one).
    assert sorted(channel._get("celery")["n"] for _ in range(3)) == [0, 1, 2]
    with pytest.raises(Empty):
        channel._get("celery")
    assert set(moved_to) == {str(tmp_path / "staging")}
    assert list((tmp_path / "staging").iterdir()) == list(elsewhere.iterdir()) == []
    assert len(list((tmp_path / "queue").iterdir())) == 1  # the other queue's message stays


def test_a_message_another_worker_took_first_is_skipped(tmp_path: Path, channel, monkeypatch):
    """Listed, then taken by another worker before this one's rename: the next is taken."""
    channel._put("celery", {"n": 0})
    channel._put("celery", {"n": 1})
    listing = os.listdir(tmp_path / "queue")
    first = tmp_path / "queue" / sorted(listing)[0]  # the one _get tries first
    first.rename(tmp_path / "taken-by-another")  # another worker's rename, after the listing
    monkeypatch.setattr(local_store.os, "listdir", lambda _folder: list(listing))
    left = json.loads((tmp_path / "taken-by-another").read_text())["n"]
    assert channel._get("celery") == {"n": 1 - left}


def test_a_message_on_a_full_disk_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path, channel, monkeypatch
):
    monkeypatch.setattr(local_store, "open", failing_open(errno.ENOSPC), raising=False)
    with pytest.raises(QueueWriteError) as raised:
        channel._put("celery", {"body": "hello"})
    queue = tmp_path / "queue"
    assert str(raised.value) == f"no space left on {queue}: the message was not queued; {FIX_SPACE}"
    assert raised.value.errno == errno.ENOSPC
    assert isinstance(raised.value, OperationalError)  # what catches broker outages catches it
    assert list(queue.iterdir()) == []


def test_results_are_stored_whole_or_not_at_all(tmp_path: Path, monkeypatch):
    backend = ResultFiles(app=Celery(set_as_current=False), url=f"file://{tmp_path}")
    backend.set(b"celery-task-meta-1", b"done")
    assert backend.get(b"celery-task-meta-1") == b"done"

    monkeypatch.setattr(local_store, "open", failing_open(errno.ENOSPC), raising=False)
    with pytest.raises(ResultWriteError) as raised:
        backend.set(b"celery-task-meta-2", b"done")
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.strerror == (
        f"no space left on {tmp_path}: the result was not stored; {FIX_SPACE}"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["celery-task-meta-1"]


def test_a_full_disk_does_not_stop_the_backend_from_starting(tmp_path: Path, monkeypatch):
    """Full is a passing state: a worker restarted meanwhile must start. A folder that cannot
    be written for another reason is still refused, as Celery does."""
    monkeypatch.setattr(local_store, "open", failing_open(errno.ENOSPC), raising=False)
    ResultFiles(app=Celery(set_as_current=False), url=f"file://{tmp_path}")
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setattr(local_store, "open", failing_open(errno.EACCES), raising=False)
    with pytest.raises(ImproperlyConfigured):
        ResultFiles(app=Celery(set_as_current=False), url=f"file://{tmp_path}")
