"""Attacks through the outbox: the agent asks the host to send a file that is not a file of
its own (a hard link or a symlink to a host file, a 2 GB sparse file, a FIFO). Each test
shows the host refusing the send, the session and another session going on, and neither the
file nor its name nor its contents reaching the chat.

The local chat delivers a file as its absolute path in the message line's "files" (it never
reads the file), so a send the host let through would show as that path, beside the row's
caption; the contents are checked for too, in case any channel were to inline them."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.attacks.conftest import RUNTIMES
from tests.attacks.hostile import ATTACKER, BYSTANDER, AttackRun, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MESSAGE_ID = "exfiltrate"
NAME = "passwd"
CAPTION = "here is the file you asked for"
SECRET = "root:x:0:0:the host's secret line:/root:/bin/sh"

# Where the agent puts the file it wants sent, as every script below names it.
FOLDER = f'M="$HUTCH_SESSION_DIR/out/outbox/{MESSAGE_ID}" && mkdir -p "$M"'

# How the host may word each refusal: what it refuses is fixed, not the words.
REASONS = {
    "hard link to a host file": ("link",),
    "symlink to a host file": ("link",),
    "2 GB sparse file": ("bytes", "size", "large"),
    "FIFO": ("regular", "does not exist", "fifo"),
}


def plant(attack: AttackRun, kind: str, host_file: Path) -> None:
    """The agent puts the file of `kind` into outbox/<message id>/ as its own would be."""
    host = shlex.quote(str(host_file))
    if kind == "hard link to a host file" and attack.runtime == "docker":
        # A container sees no host file it could link: /session is another mount than
        # /session/out, so even the host's inbound.db cannot be linked (link(2) gives EXDEV).
        tried = attack.agent(ATTACKER).sh(f'{FOLDER} && ln "$HUTCH_SESSION_DIR/inbound.db" "$M/{NAME}"')
        assert tried.code != 0 and "cross-device" in tried.output, tried.output
        # What it can link is a file of its own: the host must still refuse a second link.
        script = f'{FOLDER} && printf %s {shlex.quote(SECRET)} > "$M/../own" && ln "$M/../own" "$M/{NAME}"'
    else:
        script = {
            "hard link to a host file": f'{FOLDER} && ln {host} "$M/{NAME}"',
            "symlink to a host file": f'{FOLDER} && ln -s {host} "$M/{NAME}"',
            "2 GB sparse file": f'{FOLDER} && truncate -s 2G "$M/{NAME}"',
            "FIFO": f'{FOLDER} && mkfifo "$M/{NAME}"',
        }[kind]
    attack.move(ATTACKER, script)


@pytest.mark.parametrize("kind", list(REASONS))
@pytest.mark.parametrize("runtime", RUNTIMES, indirect=True)
def test_an_outbox_file_that_is_not_the_agents_own_is_never_sent(
    attack: AttackRun, host_files: Path, kind: str
) -> None:
    """Attack: the agent puts a hard link or a symlink to a host file (a stand-in for
    /etc/passwd), a 2 GB sparse file or a FIFO into outbox/<id>/ and writes the outbound row
    that asks to send it. Proves: the host refuses the row (recorded failed, with a warning
    naming it) without blocking on the FIFO or reading the big file; the attacker's session
    and the other session are answered afterwards; the chat never receives the caption, the
    file's path or name, or the host file's contents, and the host file is unchanged."""
    host_file = host_files / NAME
    host_file.write_text(SECRET + "\n")
    before = host_file.read_bytes()
    attacker = attack.session(ATTACKER)
    plant(attack, kind, host_file)
    mark = len(attack.log)

    attack.write_rows(ATTACKER, {"rows": [{"id": MESSAGE_ID, "text": CAPTION, "files": [NAME]}]})

    status, error = poll(
        "the host to settle the row",
        lambda: attack.deliveries(ATTACKER).get(MESSAGE_ID),
    )
    assert status == "failed", (status, error)
    assert error is not None and NAME in error, error
    attack.await_warning(attacker, MESSAGE_ID, *REASONS[kind], after=mark)

    attack.ask(ATTACKER, "anything else?")
    attack.ask(BYSTANDER, "are you still there?")
    received = attack.everything_received()
    for leak in (CAPTION, NAME, SECRET, str(attacker.layout.out / "outbox")):
        assert leak not in received, f"{leak!r} reached the chat"
    assert host_file.read_bytes() == before
    assert not attack.failures(), attack.tail()
