"""The runs' working folders: each run gets an empty 0700 folder; only an untouched one is reused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from libdcron.runs import WorkDirs


def test_each_run_gets_an_empty_private_folder_and_a_clean_one_is_reused(tmp_path: Path) -> None:
    dirs = WorkDirs(tmp_path / "runs")
    a, b = dirs.take(), dirs.take()
    assert a != b and os.listdir(a) == [] and stat.S_IMODE(os.stat(a).st_mode) == 0o700
    dirs.give_back(a)
    assert dirs.take() == a, "left empty: handed out again"


def test_a_folder_a_run_changed_is_removed_not_reused(tmp_path: Path) -> None:
    dirs = WorkDirs(tmp_path / "runs")
    littered, opened, gone = dirs.take(), dirs.take(), dirs.take()
    Path(littered, "sub").mkdir()
    Path(littered, "sub", "file").write_text("x")
    os.chmod(opened, 0o755)
    os.rmdir(gone)  # a run may even remove its own folder
    for path in (littered, opened, gone):
        dirs.give_back(path)
        assert not os.path.exists(path)
    fresh = dirs.take()
    assert fresh not in (littered, opened, gone) and os.listdir(fresh) == []


def test_what_an_earlier_process_left_is_removed_at_start_and_kept_ones_at_close(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    (root / "7" / "junk").mkdir(parents=True)
    dirs = WorkDirs(root)
    assert list(root.iterdir()) == []
    path = dirs.take()
    dirs.give_back(path)
    dirs.close()
    assert list(root.iterdir()) == []


def test_at_most_keep_folders_are_kept(tmp_path: Path) -> None:
    dirs = WorkDirs(tmp_path / "runs")
    taken = [dirs.take() for _ in range(WorkDirs.KEEP + 5)]
    for path in taken:
        dirs.give_back(path)
    assert len(list((tmp_path / "runs").iterdir())) == WorkDirs.KEEP


def test_a_larger_keep_serves_a_whole_burst_from_folders_made_before(tmp_path: Path) -> None:
    dirs = WorkDirs(tmp_path / "runs", keep=WorkDirs.KEEP * 3)
    first = [dirs.take() for _ in range(WorkDirs.KEEP * 2)]
    for path in first:
        dirs.give_back(path)
    second = [dirs.take() for _ in range(WorkDirs.KEEP * 2)]
    assert sorted(second) == sorted(first), "no folder made anew, none removed"
    assert WorkDirs(tmp_path / "other", keep=1).keep == WorkDirs.KEEP, "never fewer than KEEP"
