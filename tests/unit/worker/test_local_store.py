"""The local broker and result files (runner.worker.local_store): written whole or not at all, and a
full disk is an error that says so. The disk is simulated: ``open`` creates the file, as a
full disk does, then fails with ENOSPC (tests/e2e/test_disk_faults.py fills a real one)."""

from __future__ import annotations

import builtins
import errno
from pathlib import Path

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
    }
    for folder in ("queue", "control"):
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
