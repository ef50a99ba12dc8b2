"""Which uid each agent group folder gets: stable, unique, from the configured range (which
starts above the system's users and groups), never one that belongs to an account or whose
gid is a group's, never handed on to another folder."""

from __future__ import annotations

import grp
import pwd

import pytest

from actors.store import agent_groups
from actors.store.agent_uids import FIRST_AGENT_UID, UidRange, UidRangeExhaustedError, uid_for_folder
from actors.store.db import Store

pytestmark = pytest.mark.timeout(20)

RANGE = UidRange(2_000_000, 2_000_009)


def test_each_folder_gets_its_own_uid_and_keeps_it(store: Store) -> None:
    family = uid_for_folder(store, "family", RANGE)
    work = uid_for_folder(store, "work", RANGE)
    assert family == RANGE.first and work == RANGE.first + 1
    assert uid_for_folder(store, "family", RANGE) == family


def test_a_uid_stays_with_its_folder_after_the_group_is_deleted(store: Store) -> None:
    group = agent_groups.create(store, name="family", folder="family")
    family = uid_for_folder(store, "family", RANGE)
    agent_groups.delete(store, group.id)
    # The folder's files are still that uid's: another folder must not get it.
    assert uid_for_folder(store, "work", RANGE) != family
    assert uid_for_folder(store, "family", RANGE) == family


def test_a_new_range_moves_the_folder_into_it(store: Store) -> None:
    uid_for_folder(store, "family", RANGE)
    moved = uid_for_folder(store, "family", UidRange(3_000_000, 3_000_009))
    assert moved == 3_000_000


def test_a_full_range_is_an_error_naming_the_setting(store: Store) -> None:
    small = UidRange(2_000_000, 2_000_001)
    uid_for_folder(store, "a", small)
    uid_for_folder(store, "b", small)
    with pytest.raises(UidRangeExhaustedError, match="HUTCH_AGENT_UIDS"):
        uid_for_folder(store, "c", small)


def _known(monkeypatch: pytest.MonkeyPatch, *, users: set[int], groups: set[int]) -> None:
    """This machine's accounts and groups, as the allocator looks them up, are these only."""

    def getpwuid(uid: int) -> object:
        if uid in users:
            return object()
        raise KeyError(uid)

    def getgrgid(gid: int) -> object:
        if gid in groups:
            return object()
        raise KeyError(gid)

    monkeypatch.setattr(pwd, "getpwuid", getpwuid)
    monkeypatch.setattr(grp, "getgrgid", getgrgid)


def test_a_number_with_an_account_or_a_group_is_skipped(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # The agent runs as uid N and gid N: neither may be someone's.
    _known(monkeypatch, users={2_000_000}, groups={2_000_001, 2_000_003})
    assert uid_for_folder(store, "family", RANGE) == 2_000_002
    assert uid_for_folder(store, "work", RANGE) == 2_000_004


def test_only_groups_in_the_range_is_exhausted(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _known(monkeypatch, users=set(), groups={2_000_000, 2_000_001})
    with pytest.raises(UidRangeExhaustedError, match="HUTCH_AGENT_UIDS"):
        uid_for_folder(store, "family", UidRange(2_000_000, 2_000_001))


def test_the_machines_own_accounts_and_groups_are_skipped(store: Store) -> None:
    # No monkeypatching: the real lookups. The highest number at or above the floor that is
    # both a uid with an account and a gid with a group (`nobody`/`nogroup` is 65534 on
    # Debian; a user's own group otherwise), else any one that is either.
    users = {entry.pw_uid for entry in pwd.getpwall()}
    groups = {entry.gr_gid for entry in grp.getgrall()}
    known = sorted(number for number in users | groups if FIRST_AGENT_UID <= number < 2**32 - 3)
    if not known:
        pytest.skip("this machine has no account or group at or above the floor")
    number = known[-1]
    free = next(candidate for candidate in range(number + 1, number + 100) if candidate not in users | groups)
    assert uid_for_folder(store, "family", UidRange(number, free)) == free


@pytest.mark.parametrize("text", ["", "100", "a-b", "5-1", "0-10", "-5-10", "10-99999999999"])
def test_a_bad_range_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        UidRange.parse(text)


@pytest.mark.parametrize("text", ["20-20", "27-27", "1-99999", "999-2000"])
def test_a_range_among_the_systems_users_and_groups_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=f"starts below {FIRST_AGENT_UID}, among the system's own users and groups"):
        UidRange.parse(text)


def test_a_range_reads_as_it_is_written() -> None:
    assert UidRange.parse(" 1000000-1099999 ") == UidRange(1_000_000, 1_099_999)
    assert UidRange.parse("1000-1000") == UidRange(FIRST_AGENT_UID, FIRST_AGENT_UID)
    assert str(UidRange(5000, 5009)) == "5000-5009"
    assert 5007 in UidRange(5000, 5009) and 5010 not in UidRange(5000, 5009)
