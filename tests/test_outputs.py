"""The one writer of output files (detector/outputs.py): a partial file beside
the target, renamed into place only when complete."""

from __future__ import annotations

import os

import pytest

from detector import outputs
from detector.errors import DetectorError, OutputError


def test_the_target_appears_only_when_complete(tmp_path):
    target = tmp_path / "out.csv"
    with outputs.replacing(target) as path:
        assert path == str(tmp_path / f".out.csv.{os.getpid()}.partial")
        assert os.path.exists(path) and not target.exists()
        with open(path, "w") as stream:
            stream.write("new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_a_failure_keeps_the_earlier_file_and_removes_the_partial(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("earlier\n")
    with pytest.raises(KeyboardInterrupt), outputs.replacing(target) as path:
        with open(path, "w") as stream:
            stream.write("half")
        raise KeyboardInterrupt
    assert target.read_text() == "earlier\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_permissions_of_the_earlier_file_else_the_mode_given(tmp_path):
    earlier = tmp_path / "earlier.html"
    earlier.write_text("x")
    earlier.chmod(0o640)
    for target in (earlier, tmp_path / "new.html"):
        with outputs.replacing(target, mode=0o604) as path, open(path, "w") as stream:
            stream.write("y")
    assert earlier.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "new.html").stat().st_mode & 0o777 == 0o604


def test_fsync_only_when_asked(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(outputs.os, "fsync", lambda fd: synced.append(fd))
    with outputs.replacing(tmp_path / "a", fsync=False):
        pass
    assert synced == []
    with outputs.replacing(tmp_path / "b"):
        pass
    assert len(synced) == 1


def test_a_partial_left_by_an_earlier_process_with_this_id_is_replaced(tmp_path):
    """A killed run cannot remove its partial file; a later process that gets
    the same id (containers, services) must still be able to write."""
    stale = tmp_path / f".out.csv.{os.getpid()}.partial"
    stale.write_text("left by a killed run")
    with outputs.replacing(tmp_path / "out.csv") as path, open(path, "w") as stream:
        stream.write("new\n")
    assert (tmp_path / "out.csv").read_text() == "new\n"
    assert not stale.exists()


def test_stdout_a_device_and_an_unwritable_path(tmp_path):
    with outputs.replacing(None) as path:
        assert path is None
    with outputs.replacing("/dev/null") as path:
        assert path == "/dev/null"
    missing = tmp_path / "no-such-dir" / "f.csv"
    with pytest.raises(OutputError) as caught, outputs.replacing(missing):
        pytest.fail("the block must not run")
    assert isinstance(caught.value, DetectorError)
    assert str(caught.value) == (
        f"cannot write {missing}: No such file or directory; choose a writable path"
    )
