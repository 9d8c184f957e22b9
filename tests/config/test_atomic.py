"""Write-then-rename: nothing half-written, usual permissions."""

import os
import stat

import pytest

from medmae.atomic import atomic_dir, atomic_write_text


def test_atomic_text_permissions_and_no_leftovers(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "a" / "f.txt", "hello")
        with atomic_dir(tmp_path / "case") as d:
            (d / "x").write_text("1")
    finally:
        os.umask(old)
    assert p.read_text() == "hello"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "case").stat().st_mode) == 0o755
    assert sorted(x.name for x in (tmp_path / "a").iterdir()) == ["f.txt"]


def test_atomic_dir_failure_keeps_old_content(tmp_path):
    target = tmp_path / "case"
    with atomic_dir(target) as d:
        (d / "v").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "v").write_text("new, half")
            raise RuntimeError("crash mid-write")
    assert (target / "v").read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["case"]


def test_a_device_folder_or_symlink_is_never_replaced(tmp_path):
    """`--out /dev/null` (or a FIFO, a folder, a link) must not become an ordinary file."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    target = tmp_path / "target.txt"
    target.write_text("kept")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    for path in (fifo, folder, link):
        with pytest.raises(OSError, match="refusing to replace"):
            atomic_write_text(path, "x")
    assert not fifo.is_file() and folder.is_dir() and link.is_symlink() and target.read_text() == "kept"
    atomic_write_text(tmp_path / "new.txt", "ok")
    assert (tmp_path / "new.txt").read_text() == "ok"
