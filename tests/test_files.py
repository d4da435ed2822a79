"""Atomic writes: a full disk or an interrupt mid-write never damages the previous file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from helpers import fail_writes

from seqclf.errors import SeqclfError, TrainingError
from seqclf.store import checkpoint, files


@pytest.mark.parametrize("kind", ["checkpoint", "text", "json"])
def test_a_write_failing_half_way_leaves_the_previous_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  kind: str) -> None:
    path = tmp_path / {"checkpoint": "last.pt", "text": "config.yaml", "json": "summary.json"}[kind]
    base = {"config": {"seed": 0}, "model": {"w": torch.arange(5000.0)}, "data": {}}

    def write(version: int) -> None:
        if kind == "checkpoint":
            checkpoint.save(path, {**base, "epoch": version})
        elif kind == "text":
            files.write_text(path, f"seed: {version}\n" * 500)
        else:
            files.write_json(path, {"epoch": version, "pad": "x" * 5000})

    write(1)
    before = path.read_bytes()
    handles = fail_writes(monkeypatch, tmp_path, room=len(before) // 2)
    with pytest.raises(TrainingError, match="No space left on device") as info:
        write(2)
    assert str(path) in str(info.value) and "previous version is intact" in str(info.value)
    assert handles and list(handles[0].partial.values()) == [len(before) // 2]  # really failed half way
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    monkeypatch.undo()
    write(3)
    assert path.read_bytes() != before
    if kind == "json":
        assert json.loads(path.read_text())["epoch"] == 3


def test_a_second_ctrl_c_mid_write_leaves_the_previous_file_intact(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"config": {}, "model": {"w": torch.ones(4000)}, "data": {}})
    before = path.read_bytes()
    fail_writes(monkeypatch, tmp_path, room=1000, error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, {"config": {}, "model": {"w": torch.zeros(4000)}, "data": {}})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_first_write_that_fails_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fail_writes(monkeypatch, tmp_path, room=10)
    with pytest.raises(TrainingError, match="nothing was written"):
        files.write_text(tmp_path / "config.yaml", "x" * 100)
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """mkstemp creates 0600 files; renamed into place they should read like any other file (umask)."""
    old = os.umask(0o022)
    try:
        files.write_text(tmp_path / "a.txt", "hi")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_temp_files_of_dead_writers_are_removed_by_the_next_write(tmp_path: Path) -> None:
    """A SIGKILL mid-write leaves `.NAME.PID.XXXXXXXX.tmp`; only stale ones of gone processes are removed."""
    import time

    dead = next(pid for pid in range(4_194_400, 4_195_000) if not files.pid_alive(pid))  # above Linux's pid_max
    an_hour_ago = time.time() - 3600
    made = {"stale": f".last.pt.{dead}.abcd1234.tmp", "fresh": f".last.pt.{dead}.efgh5678.tmp",
            "alive": f".last.pt.{os.getppid()}.ijkl9012.tmp", "other": ".notes.tmp"}
    for kind, name in made.items():
        (tmp_path / name).write_text(kind)
        if kind != "fresh":  # a fresh one may be another machine's writer, still at work
            os.utime(tmp_path / name, (an_hour_ago, an_hour_ago))
    files.write_json(tmp_path / "summary.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*made.values(), "summary.json"][1:])


def test_a_symbolic_link_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "target.json").write_text("old")
    (tmp_path / "link.json").symlink_to(tmp_path / "real" / "target.json")
    files.write_json(tmp_path / "link.json", {"a": 1})
    assert (tmp_path / "link.json").is_symlink()
    assert json.loads((tmp_path / "real" / "target.json").read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real"]  # no temp file beside the link


def test_a_path_that_is_not_a_regular_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    nodes = [tmp_path / "pipe"]
    if os.geteuid() == 0:  # a device node like /dev/full (1, 7), made here rather than touching /dev
        os.mknod(tmp_path / "full", stat.S_IFCHR | 0o666, os.makedev(1, 7))
        nodes.append(tmp_path / "full")
    (tmp_path / "to-pipe").symlink_to(tmp_path / "pipe")
    for path, kind in [*((node, "FIFO" if node.name == "pipe" else "device") for node in nodes),
                       (tmp_path / "to-pipe", "FIFO")]:
        with pytest.raises(SeqclfError, match=f"{path}: not a regular file \\(a {kind}\\)"):
            files.write_text(path, "x")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode) and (tmp_path / "to-pipe").is_symlink()
    if len(nodes) == 2:
        assert stat.S_ISCHR(os.lstat(tmp_path / "full").st_mode)
