import pytest

from routehead_pyserini.files import atomic_open, atomic_write_text


def test_atomic_write_replaces_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_creates_parent_folders(tmp_path):
    target = tmp_path / "a" / "b" / "c.txt"
    atomic_write_text(target, "x")
    assert target.read_text() == "x"


def test_outputs_honour_the_umask(tmp_path):
    import os
    import stat

    from routehead_pyserini.files import atomic_directory

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "new.txt", "x")
        with atomic_directory(tmp_path / "index") as folder:
            (folder / "f").write_text("y")
        os.umask(0o027)
        atomic_write_text(tmp_path / "other.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "index").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "other.txt").stat().st_mode) == 0o640
    (tmp_path / "new.txt").chmod(0o600)
    atomic_write_text(tmp_path / "new.txt", "replaced")  # a replaced file keeps its mode
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o600


def test_unwritable_target_is_an_output_error(tmp_path):
    from routehead_pyserini.files import OutputError

    (tmp_path / "folder").mkdir()
    with pytest.raises(OutputError, match=r"cannot write .*folder: Is a directory"):
        atomic_write_text(tmp_path / "folder", "x")
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match=r"cannot write .*file/out.txt: .*file is a file, not a folder"):
        atomic_write_text(tmp_path / "file" / "out.txt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]
