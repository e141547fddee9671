"""atomic_folder: the new folder appears whole, or the old one stays untouched."""

from __future__ import annotations

import pytest

from tinyir.atomic import atomic_folder


def test_replaces_an_existing_folder_whole(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_folder(target) as tmp:
        (tmp / "new.txt").write_text("new")
        assert not (target / "new.txt").exists()  # nothing visible before the block ends
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temp or old folder left


def test_an_error_keeps_the_old_folder(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "model").write_text("not a folder")
    with pytest.raises(ValueError, match="folder"), atomic_folder(tmp_path / "model"):
        pass


def test_write_atomic_replaces_a_file_whole(tmp_path):
    from tinyir.atomic import write_atomic

    target = tmp_path / "sub" / "grades.csv"
    write_atomic(target, "a,b\n")
    write_atomic(target, "c,d\n")
    assert target.read_bytes() == b"c,d\n"
    assert [p.name for p in target.parent.iterdir()] == ["grades.csv"]


def test_atomic_file_error_keeps_the_old_file(tmp_path):
    from tinyir.atomic import atomic_file

    target = tmp_path / "model.safetensors"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_keep_existing_lets_the_first_writer_win(tmp_path):
    """Two builders of one cache entry: whoever publishes first stays; the second's copy goes."""
    target = tmp_path / "entry"
    with atomic_folder(target, keep_existing=True) as first:
        with atomic_folder(target, keep_existing=True) as second:
            (second / "who.txt").write_text("second")
        (first / "who.txt").write_text("first")
    assert (target / "who.txt").read_text() == "second"  # it published first
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]
