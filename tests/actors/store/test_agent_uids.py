"""Which uid each agent group folder gets: stable, unique, from the configured range, never
one that belongs to an account, never handed on to another folder."""

from __future__ import annotations

import pwd

import pytest

from actors.store import agent_groups
from actors.store.agent_uids import UidRange, UidRangeExhaustedError, uid_for_folder
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


def test_a_uid_with_an_account_is_skipped(store: Store) -> None:
    taken = {entry.pw_uid for entry in pwd.getpwall()}
    account = next(uid for uid in sorted(taken) if uid > 0 and uid + 1 not in taken)
    assert uid_for_folder(store, "family", UidRange(account, account + 1)) == account + 1


@pytest.mark.parametrize("text", ["", "100", "a-b", "5-1", "0-10", "-5-10", "10-99999999999"])
def test_a_bad_range_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        UidRange.parse(text)


def test_a_range_reads_as_it_is_written() -> None:
    assert UidRange.parse(" 1000000-1099999 ") == UidRange(1_000_000, 1_099_999)
    assert str(UidRange(5, 9)) == "5-9" and 7 in UidRange(5, 9) and 10 not in UidRange(5, 9)
