"""The uid lease: ranges never shared between services, bounds, and a lock directory in a shared
/tmp that an attacker could have prepared (real symlinks and directories in a temp dir)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from adapters.sandbox.lease import (
    MAX_ATTEMPTS,
    RANGE_STRIDE,
    UID_BASE_MAX,
    UID_BASE_MIN,
    UID_LIMIT,
    LeaseError,
    lease_uid_range,
)

BASE = 900_000


@pytest.fixture
def locks(tmp_path: Path) -> Path:
    return tmp_path / "locks"


def test_the_first_free_range_is_leased_and_held(locks: Path) -> None:
    lease = lease_uid_range(BASE, locks)

    assert lease.base == BASE
    assert (locks / f"uids-{BASE}.lock").is_file()
    with (
        (locks / f"uids-{BASE}.lock").open("r") as other,
        pytest.raises(BlockingIOError),
    ):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    lease.handle.close()


def test_a_second_service_leases_the_next_range_and_a_released_one_is_reused(
    locks: Path,
) -> None:
    first = lease_uid_range(BASE, locks)
    second = lease_uid_range(BASE, locks)

    assert (first.base, second.base) == (BASE, BASE + RANGE_STRIDE)
    first.handle.close()
    third = lease_uid_range(BASE, locks)
    assert third.base == BASE
    second.handle.close()
    third.handle.close()


def test_the_lock_directory_is_created_private(locks: Path) -> None:
    lease_uid_range(BASE, locks).handle.close()

    assert locks.stat().st_mode & 0o777 == 0o700
    assert (locks / f"uids-{BASE}.lock").stat().st_mode & 0o777 == 0o600


def test_no_free_range_is_an_error(locks: Path) -> None:
    held = [lease_uid_range(BASE, locks) for _ in range(MAX_ATTEMPTS)]

    with pytest.raises(LeaseError, match="no free sandbox uid range"):
        lease_uid_range(BASE, locks)
    for lease in held:
        lease.handle.close()


@pytest.mark.parametrize("base", [0, 1, 1000, UID_BASE_MIN - 1, UID_BASE_MAX + 1, 2**32 - 1])
def test_a_base_whose_ranges_could_reach_system_uids_or_pass_2_31_is_refused(
    locks: Path, base: int
) -> None:
    with pytest.raises(LeaseError, match="outside"):
        lease_uid_range(base, locks)
    assert not locks.exists()


def test_the_highest_base_keeps_every_range_tried_below_2_31() -> None:
    last_uid = UID_BASE_MAX + (MAX_ATTEMPTS - 1) * RANGE_STRIDE + RANGE_STRIDE - 1

    assert last_uid < UID_LIMIT == 2**31
    assert UID_BASE_MIN >= 65_536


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(
    tmp_path: Path, locks: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    locks.mkdir(mode=0o700)
    (locks / f"uids-{BASE}.lock").symlink_to(victim)

    with pytest.raises(LeaseError, match="unusable"):
        lease_uid_range(BASE, locks)
    assert victim.read_text() == "precious"


def test_a_dangling_symlinked_lock_file_creates_nothing(tmp_path: Path, locks: Path) -> None:
    target = tmp_path / "would-be-created"
    locks.mkdir(mode=0o700)
    (locks / f"uids-{BASE}.lock").symlink_to(target)

    with pytest.raises(LeaseError):
        lease_uid_range(BASE, locks)
    assert not target.exists()


def test_a_symlinked_lock_directory_is_refused(tmp_path: Path, locks: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    locks.symlink_to(elsewhere)

    with pytest.raises(LeaseError, match="unusable"):
        lease_uid_range(BASE, locks)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770, 0o702])
def test_a_lock_directory_others_may_write_to_is_refused(locks: Path, mode: int) -> None:
    locks.mkdir()
    locks.chmod(mode)

    with pytest.raises(LeaseError, match="others may write"):
        lease_uid_range(BASE, locks)
    assert list(locks.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory away needs root")
def test_a_lock_directory_of_another_user_is_refused(locks: Path) -> None:
    locks.mkdir(mode=0o700)
    os.chown(locks, 65534, 65534)

    with pytest.raises(LeaseError, match="belongs to uid 65534"):
        lease_uid_range(BASE, locks)
    assert list(locks.iterdir()) == []


def test_a_lock_path_that_is_a_file_is_refused(locks: Path) -> None:
    locks.write_text("")

    with pytest.raises(LeaseError, match="unusable"):
        lease_uid_range(BASE, locks)


def test_a_lock_file_that_is_a_directory_or_fifo_is_refused(locks: Path) -> None:
    locks.mkdir(mode=0o700)
    (locks / f"uids-{BASE}.lock").mkdir()

    with pytest.raises(LeaseError):
        lease_uid_range(BASE, locks)
    os.rmdir(locks / f"uids-{BASE}.lock")
    os.mkfifo(locks / f"uids-{BASE}.lock")
    with pytest.raises(LeaseError, match="not a regular file"):
        lease_uid_range(BASE, locks)
