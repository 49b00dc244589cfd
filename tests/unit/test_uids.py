"""Kernel uids are claimed with lock files: two claimers on one range never hold the same uid."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.uids import KernelUids
from singlecell.errors import KernelUnavailable

FREE = (3_900_000, 3_900_003)  # a range no process on a test machine runs as


def test_two_claimers_on_one_range_never_hold_the_same_uid(tmp_path: Path) -> None:
    a, b = KernelUids(*FREE, lock_dir=tmp_path), KernelUids(*FREE, lock_dir=tmp_path)
    assert [a.take(), a.take(), b.take()] == [3_900_000, 3_900_001, 3_900_002]
    a.give_back(3_900_000)
    assert a.take() == 3_900_000  # its own uid again, most recently freed first
    assert b.take() == 3_900_003
    with pytest.raises(KernelUnavailable, match="widen --kernel-uids"):
        b.take()
    a.close()  # as when a device exits: its uids are free for the others
    assert sorted([b.take(), b.take()]) == [3_900_000, 3_900_001]
    b.close()


def test_a_uid_some_process_runs_as_is_not_claimed(tmp_path: Path) -> None:
    uids = KernelUids(0, 0, lock_dir=tmp_path)  # root's: this test runs among root's processes
    with pytest.raises(KernelUnavailable):
        uids.take()


def test_from_the_top_claims_the_end_of_the_range_first(tmp_path: Path) -> None:
    top, bottom = KernelUids(*FREE, lock_dir=tmp_path, from_top=True), KernelUids(*FREE, lock_dir=tmp_path)
    assert (top.take(), bottom.take()) == (3_900_003, 3_900_000)
    top.close()
    bottom.close()


def test_at_most_keep_uids_are_claimed_and_then_only_given_back_ones_are_taken(tmp_path: Path) -> None:
    uids = KernelUids(*FREE, lock_dir=tmp_path, keep=2)
    assert [uids.take(), uids.take()] == [3_900_000, 3_900_001]
    assert not uids.can_take()
    with pytest.raises(KernelUnavailable, match="all 2 kernel uids this process keeps"):
        uids.take()
    assert len(list(tmp_path.iterdir())) == 2  # no third lock file was even made
    uids.give_back(3_900_001)
    assert uids.can_take() and uids.take() == 3_900_001
    assert len(uids.held) == 2
    uids.close()
