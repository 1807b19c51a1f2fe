"""Atomic writes: a full disk leaves the previous file intact, removes the temp file and
ends in one line naming the file; output files get the mode open() would give them."""

from __future__ import annotations

import errno
import io
import os
import stat
import subprocess

import pytest
import torch

from fdseg_core.atomic import (
    DiskFullError,
    atomic_path,
    atomic_torch_save,
    atomic_write_text,
)


class _FullDisk(io.FileIO):
    """A file that takes ``room`` bytes and then fails as a full disk does."""

    room = 1000

    def write(self, data):
        if self.tell() + len(data) > self.room:
            super().write(bytes(data[: max(0, self.room - self.tell())]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def test_a_full_disk_keeps_the_previous_checkpoint_and_removes_the_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    atomic_torch_save({"epoch": 1}, target)
    monkeypatch.setattr("fdseg_core.atomic.open", _FullDisk, raising=False)
    with pytest.raises(DiskFullError) as err:
        atomic_torch_save({"epoch": 2}, target)
    message = str(err.value)
    assert str(target) in message and "no space left" in message and "\n" not in message
    assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert torch.load(target)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_new_files_get_the_mode_of_open_not_the_temp_files(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "hello")
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    path.chmod(0o640)
    atomic_write_text(path, "again")  # a replaced file keeps its mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text() == "again"


def test_an_interrupted_writer_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "x.nii.gz") as tmp:
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_filesystem(tmp_path):
    """A 512 KiB tmpfs, where this machine lets the tests mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_a_real_full_filesystem(small_filesystem):
    target = small_filesystem / "best.pt"
    atomic_torch_save({"w": torch.zeros(10)}, target)
    with pytest.raises(DiskFullError, match="no space left"):
        atomic_torch_save({"w": torch.zeros(400_000)}, target)  # 1.6 MB
    assert torch.load(target)["w"].shape == (10,)
    assert [p.name for p in small_filesystem.iterdir()] == ["best.pt"]
