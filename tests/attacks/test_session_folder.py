"""Attacks on the session folder itself: the host's part of it (read-only to a container),
and the agent's `out/` (outbound.db, `.heartbeat`, `out/` as a whole) swapped for links,
folders or garbage. Each test shows the host refusing the move, another session still
answered, and nothing of anyone else's reaching the attacker's chat."""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
from pathlib import Path
from typing import Any

import pytest

from protocol import outbound
from protocol.content import ChatOut
from protocol.db import create_session_db, write_transaction
from protocol.layout import OUTBOUND_DB
from protocol.rows import Routing
from protocol.schema import OUTBOUND
from protocol.timeutil import now_ts
from tests.attacks.conftest import DOCKER, RUNTIMES
from tests.attacks.hostile import ATTACKER, BYSTANDER, AttackRun, end_agent
from tests.fakes.chat_client import ChatClient

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# How the host may say it did not follow a link (ELOOP from O_NOFOLLOW, or its own words).
LINK_REFUSED = ("symbolic link", "symlink", "is a link")

# The host acks a message once it is committed, in milliseconds; this is plenty.
ACK_S = 5.0

# What a lure holds: were the host to read it as the attacker's outbound.db, it would send it.
HOST_SECRET = "host secret: the contents of a file only the host may read"


def make_lure(path: Path) -> None:
    """A host file that is a valid outbound.db with one row for the attacker's chat, its seq
    far above anything the session has seen: the worst thing a link could lead the host to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    create_session_db(path, OUTBOUND)
    with write_transaction(path) as conn:
        outbound.insert_message(
            conn, message_id="lure", content=ChatOut(text=HOST_SECRET), timestamp=now_ts(),
            highest_inbound_seq=1000, routing=Routing("local", "cli", ATTACKER),
        )  # fmt: skip


def fingerprint(path: Path) -> tuple[int, int, int, int, bytes]:
    st = os.lstat(path)
    return st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, path.read_bytes()


def give_the_bystander_rows_past_the_attackers_cursor(attack: AttackRun) -> None:
    """A session reads the rows after its cursor: the bystander's rows must lie beyond the
    attacker's, or a host that followed a link to them would skip them and prove nothing."""
    attack.ask(BYSTANDER, "one")
    attack.ask(BYSTANDER, "two")


def assert_nothing_of_the_bystander_taken(attack: AttackRun) -> None:
    for text in ("hello", "one", "two"):
        assert attack.answers(BYSTANDER, text) == 1, attack.summary()
    taken = attack.deliveries(ATTACKER).keys() & attack.outbound_ids(BYSTANDER)
    assert not taken, f"the attacker's session recorded the bystander's rows as its own: {taken}"


# --- the host's part: read-only to a container -----------------------------------------------


ROOT_WRITES = {
    "remove inbound.db": 'rm -f "$HUTCH_SESSION_DIR/inbound.db"',
    "link over inbound.db": 'ln -sf /etc/passwd "$HUTCH_SESSION_DIR/inbound.db"',
    "rename inbound.db": 'mv "$HUTCH_SESSION_DIR/inbound.db" "$HUTCH_SESSION_DIR/inbound.old"',
    "create a file": 'touch "$HUTCH_SESSION_DIR/planted"',
    "create a link": 'ln -s /etc "$HUTCH_SESSION_DIR/planted"',
    "create a folder in inbox/": 'mkdir "$HUTCH_SESSION_DIR/inbox/planted"',
    "replace out/": 'mv "$HUTCH_SESSION_DIR/out" "$HUTCH_SESSION_DIR/out.moved"',
}


@pytest.mark.parametrize("runtime", [DOCKER], indirect=True)
def test_the_container_can_change_nothing_in_the_session_folder_but_out(attack: AttackRun) -> None:
    """Attack: from inside its container, the agent removes inbound.db to put a link to a host
    path in its place (`rm inbound.db; ln -s /some/host/path inbound.db`), renames it, plants
    a file, a link or a folder beside the host's files, and moves `out/` away. Proves: /session
    is mounted read-only, so every one of those fails with EROFS whatever the agent's uid,
    while /session/out stays writable; the host's files are untouched and both sessions are
    answered afterwards."""
    session = attack.session(ATTACKER)
    root = session.layout.root
    entries = sorted(os.listdir(root))
    inbound_db = fingerprint(session.layout.inbound_db)
    agent = attack.agent(ATTACKER)

    mounts = {mount["Destination"]: mount["RW"] for mount in attack.container(session.id).attrs["Mounts"]}
    assert mounts["/session"] is False and mounts["/session/out"] is True, mounts

    for what, script in ROOT_WRITES.items():
        done = agent.sh(script)
        assert done.code != 0, f"{what}: the container could do it"
        assert "Read-only file system" in done.output, f"{what}: {done.output}"
    appended = agent.sh('echo planted >> "$HUTCH_SESSION_DIR/inbound.db"')
    assert appended.code != 0, "the container could write into inbound.db"
    writable = agent.sh(
        'cd "$HUTCH_SESSION_DIR/out" && touch probe && ln -s /etc probe-link && mkdir probe-dir'
        " && rm -r probe probe-link probe-dir"
    )
    assert writable.code == 0, f"out/ is not writable for the agent: {writable.output}"

    assert sorted(os.listdir(root)) == entries
    assert fingerprint(session.layout.inbound_db) == inbound_db
    attack.ask(ATTACKER, "still here?")
    attack.ask(BYSTANDER, "and you?")
    assert not attack.failures(), attack.tail()


# --- out/outbound.db swapped for a link ----------------------------------------------------


@pytest.mark.parametrize("target", ["another session's outbound.db", "a host file", "a host path not there"])
@pytest.mark.parametrize("runtime", RUNTIMES, indirect=True)
def test_an_outbound_db_swapped_for_a_link_is_not_followed(attack: AttackRun, host_files: Path, target: str) -> None:
    """Attack: the agent replaces out/outbound.db with a link to another session's outbound.db,
    to a host file (a valid outbound.db holding a row for the attacker's chat) or to a host
    path that does not exist. Proves: the host opens it without following the link and logs
    the refusal; the link's target is unchanged or still absent; no row of the other session
    (nor the host file's) is taken as the attacker's; the other session is answered."""
    give_the_bystander_rows_past_the_attackers_cursor(attack)
    attacker = attack.session(ATTACKER)
    if target == "another session's outbound.db":
        path = attack.session(BYSTANDER).layout.outbound_db
    elif target == "a host file":
        path = host_files / "secret.db"
        make_lure(path)
    else:
        path = host_files / "planted.db"
    before = fingerprint(path) if path.exists() else None
    mark = len(attack.log)

    attack.move(
        ATTACKER, f'cd "$HUTCH_SESSION_DIR/out" && rm {OUTBOUND_DB} && ln -s {shlex.quote(str(path))} {OUTBOUND_DB}'
    )

    attack.await_warning(attacker, OUTBOUND_DB, *LINK_REFUSED, after=mark)
    # Before the bystander is asked again: its agent then writes its own outbound.db.
    assert (fingerprint(path) if path.exists() else None) == before
    attack.ask(BYSTANDER, "after the link")
    assert_nothing_of_the_bystander_taken(attack)
    assert HOST_SECRET not in attack.everything_received()
    assert not attack.failures(), attack.tail()


@pytest.mark.parametrize("runtime", [DOCKER], indirect=True)
def test_a_dangling_outbound_link_is_not_followed_when_the_session_starts_again(
    attack: AttackRun, host_files: Path
) -> None:
    """Attack: the container links out/outbound.db to a host path that does not exist (it does
    not exist in the container either, so only the host could follow it), then waits for its
    session to start again (here: the host restarts and a message arrives). Proves: the
    session's start, which makes an outbound.db where there is none, does not create one
    through the link; the host names the link in its log (refused as it reads it, or moved
    aside as the session starts); the other session is answered."""
    attacker = attack.session(ATTACKER)
    planted = host_files / "created-by-the-host.db"
    attack.move(
        ATTACKER, f'cd "$HUTCH_SESSION_DIR/out" && rm {OUTBOUND_DB} && ln -s {shlex.quote(str(planted))} {OUTBOUND_DB}'
    )

    attack.restart()
    mark = len(attack.log)
    attack.send(ATTACKER, "wake up")
    attack.await_log(attacker.tag, "session started", after=mark)
    # Refused as it is read, or moved aside at the start: either way named, never followed.
    attack.await_warning(attacker, OUTBOUND_DB, *LINK_REFUSED, after=mark)
    attack.ask(BYSTANDER, "after the restart")
    assert not os.path.lexists(planted)
    assert not attack.failures(), attack.tail()


# --- out/ itself swapped for a link (process runtime: a container cannot) ---------------------


@pytest.mark.parametrize("target", ["another session's out/", "a host folder"])
@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_an_out_folder_swapped_for_a_link_is_not_followed(attack: AttackRun, host_files: Path, target: str) -> None:
    """Attack (process runtime: in a container out/ is a mount point in a read-only folder, see
    the test above): the agent moves out/ aside and puts a link to another session's out/ or
    to a host folder holding an outbound.db in its place. Proves: the host reads nothing
    through the link and logs the refusal; none of the other session's rows (nor the host
    folder's) reach the chat again as the attacker's; the other session is answered."""
    give_the_bystander_rows_past_the_attackers_cursor(attack)
    attacker = attack.session(ATTACKER)
    if target == "another session's out/":
        folder = attack.session(BYSTANDER).layout.out
    else:
        folder = host_files / "out"
        make_lure(folder / OUTBOUND_DB)
    mark = len(attack.log)

    attack.move(ATTACKER, f'cd "$HUTCH_SESSION_DIR" && mv out out.moved && ln -s {shlex.quote(str(folder))} out')

    # The sweep reads every second: either the refusal or a row taken shows within a few.
    attack.read_until(
        "the attacker's session to refuse the link or to take a row through it",
        lambda: (
            attack.warnings(attacker, "", *LINK_REFUSED, after=mark)
            or attack.answers(BYSTANDER, "one") > 1
            or HOST_SECRET in attack.everything_received()
        ),
    )
    attack.ask(BYSTANDER, "after the link")
    assert HOST_SECRET not in attack.everything_received()
    assert_nothing_of_the_bystander_taken(attack)
    assert attack.warnings(attacker, "", *LINK_REFUSED, after=mark)


@pytest.mark.parametrize("runtime", ["process"], indirect=True)
def test_an_out_folder_swapped_for_a_link_is_not_followed_when_the_session_starts_again(
    attack: AttackRun, host_files: Path
) -> None:
    """Attack (process runtime, as above): the agent puts a link to a host folder in place of
    out/ and waits for its session to start again (here: the host restarts and its owner
    writes). Proves: the session's start creates nothing in the link's target and fails
    nothing unhandled; the host names the link in a warning; the owner's message is answered
    (acked, or refused with an error) at once rather than left waiting; another client's
    session is answered."""
    attacker = attack.session(ATTACKER)
    target = host_files / "elsewhere"
    target.mkdir()
    attack.move(ATTACKER, f'cd "$HUTCH_SESSION_DIR" && mv out out.moved && ln -s {shlex.quote(str(target))} out')

    attack.restart()
    mark = len(attack.log)
    # A client of its own: the local chat answers a client's lines in order, so a message
    # the host never answers would hold up the acks of the bystander's messages behind it.
    owner = ChatClient(attack.data_dir / "cli.sock", timeout=ACK_S)
    answered: dict[str, Any] | None = None
    try:
        with contextlib.suppress(queue.Empty):
            answered = owner.send("wake up", thread=ATTACKER)
    finally:
        owner.close()
    attack.ask(BYSTANDER, "after the restart")

    assert os.listdir(target) == [], "the host created something through the link"
    assert not attack.failures(), attack.tail()
    assert attack.warnings(attacker, "out", "link", "not a folder", after=mark), attack.tail()
    assert answered is not None, f"the owner's message was neither acked nor refused in {ACK_S:g} s"


# --- .heartbeat swapped for a folder, outbound.db for garbage -----------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES, indirect=True)
def test_a_heartbeat_swapped_for_a_folder_does_not_take_the_session_down(attack: AttackRun) -> None:
    """Attack: the agent replaces out/.heartbeat with a folder and ends itself, so the host has
    to start it again over the folder. Proves: the host neither fails the session (no crash
    loop: nothing in the log of a session failing) nor stalls the other one; the attacker's
    agent is started again cleanly and its chat answered."""
    attacker = attack.session(ATTACKER)
    attack.move(ATTACKER, 'cd "$HUTCH_SESSION_DIR/out" && rm -f .heartbeat && mkdir .heartbeat')
    end_agent(attack, ATTACKER)

    attack.ask(BYSTANDER, "are you fine?")
    attack.send(ATTACKER, "are you back?")
    attack.read_until(
        "the attacker's answer, or its session failing",
        lambda: attack.answers(ATTACKER, "are you back?") or attack.failures(),
    )
    assert not attack.failures(), attack.tail()
    assert attack.answers(ATTACKER, "are you back?") == 1
    assert not os.path.isdir(attacker.layout.heartbeat), "the new agent's heartbeat cannot be seen"
    attack.ask(BYSTANDER, "still fine?")


@pytest.mark.parametrize("runtime", RUNTIMES, indirect=True)
def test_a_garbage_outbound_db_is_refused_and_its_agent_retried_at_a_backoff(attack: AttackRun) -> None:
    """Attack: the agent writes its out/outbound.db over with bytes that are not SQLite at all,
    then its owner writes to it. Proves: the host refuses to read it (logged) and neither fails
    nor stalls the session; the agent, which can no longer record anything, exits and is
    started again only at the retry backoff (the second try in 5 s, the third in 10 s: no
    crash loop), the owner's message kept pending for it (after the last try the owner is
    told, as tests/actors/session covers); the other session is answered meanwhile."""
    attacker = attack.session(ATTACKER)
    mark = len(attack.log)
    # Written over in place: a container may write its outbound.db without owning the folder.
    attack.move(ATTACKER, f'yes "not a database" | head -c 65536 > "$HUTCH_SESSION_DIR/out/{OUTBOUND_DB}"')
    attack.await_warning(attacker, OUTBOUND_DB, "not a database", after=mark)
    attack.ask(BYSTANDER, "still there?")

    attack.send(ATTACKER, "can you hear me?")
    attack.await_log(attacker.tag, "will be retried in 5 s (try 2 of 5)", after=mark)
    attack.ask(BYSTANDER, "and now?")
    attack.await_log(attacker.tag, "will be retried in 10 s (try 3 of 5)", after=mark)
    # The agent that was running exited at its first write; one start since, for the retry.
    starts = [line for line in attack.log[mark:] if attacker.tag in line and "agent started" in line]
    assert len(starts) == 1, starts
    assert attack.answers(ATTACKER, "can you hear me?") == 0
    assert not attack.failures(), attack.tail()
