"""The file sweep takes regular files only and never follows a link out of the folder."""

from __future__ import annotations

import os
from pathlib import Path

from device.sweep import is_empty, sweep


def test_regular_files_and_subfolders_are_collected(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"\x00\x01")
    result = sweep(str(tmp_path), {}, 10, 100)
    assert sorted((f.name, f.data) for f in result.files) == [("a.txt", b"A"), ("sub/b.bin", b"\x00\x01")]


def test_symlinks_hard_links_and_fifos_are_skipped(tmp_path: Path) -> None:
    secret = tmp_path.parent / f"{tmp_path.name}-secret"
    secret.write_text("server secret")
    work = tmp_path / "work"
    work.mkdir()
    (work / "link").symlink_to(secret)
    (work / "dirlink").symlink_to(tmp_path.parent, target_is_directory=True)
    os.link(secret, work / "hard")
    os.mkfifo(work / "fifo")
    result = sweep(str(work), {}, 10, 100)
    assert result.files == []
    assert any("hard link" in s for s in result.skipped)
    assert any(s.startswith("fifo") for s in result.skipped)


def test_count_and_size_limits_are_kept(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"f{i}").write_text("x" * i)
    (tmp_path / "big").write_bytes(b"y" * 1000)
    result = sweep(str(tmp_path), {}, 3, 100)
    assert len(result.files) == 3
    assert any("larger than 100" in s for s in result.skipped)
    assert any("after the first 3" in s for s in result.skipped)


def test_unchanged_uploads_are_not_outputs_but_changed_ones_are(tmp_path: Path) -> None:
    (tmp_path / "same.csv").write_bytes(b"1,2")
    (tmp_path / "edited.csv").write_bytes(b"new")
    result = sweep(str(tmp_path), {"same.csv": b"1,2", "edited.csv": b"old"}, 10, 100)
    assert [f.name for f in result.files] == ["edited.csv"]


def test_is_empty_sees_any_entry(tmp_path: Path) -> None:
    assert is_empty(str(tmp_path))
    (tmp_path / ".hidden").write_text("")
    assert not is_empty(str(tmp_path))
