"""The control page in a real headless Chromium (Debian's, driven by playwright), against a
real host process (process runtime, mock provider): log in with the printed token, see a
session appear after a chat message without a reload, cancel a task the agent scheduled,
approve a sender. Screenshots of each step go to `test-artifacts/control-page/`.

Skipped, saying why, where Chromium is not installed (`scripts/ensure_chromium.sh`, run by
`make test`, installs it where it can)."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, SupportsIndex

import pytest

from actors.store import members, messaging_group_agents, messaging_groups, pairing_requests
from actors.store.db import open_store
from protocol.db import read_transaction
from protocol.timeutil import format_ts, utc_now
from tests.fakes.chat_client import ChatClient
from tests.fakes.host_process import REPO, HostProcess

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "control-page"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000
URL_LINE = re.compile(r"control page: (http://127\.0\.0\.1:\d+/)\?token=(\S+)")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM} (scripts/ensure_chromium.sh installs it)"),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extras)")


class Log(list[str]):
    """The host's output; `wait_for` returns once a line matches, woken by each new line."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = threading.Condition()

    def append(self, line: str, /) -> None:
        with self._changed:
            super().append(line)
            self._changed.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 30) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def seen() -> bool:
            found.extend(match for line in self if (match := pattern.search(line)))
            return bool(found)

        with self._changed:
            assert self._changed.wait_for(seen, timeout), "".join(self[-40:])
        return found[0]

    def tail(self, lines: SupportsIndex = 60) -> str:
        return "".join(self[-int(lines) :])


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Unix socket paths must stay short: pytest's tmp_path can be too long for cli.sock.
    with tempfile.TemporaryDirectory(prefix="hutch-page-", dir="/tmp") as folder:
        yield Path(folder)


@pytest.fixture
def host_log(data_dir: Path) -> Iterator[Log]:
    """A running host's output."""
    log = Log()
    # Port 0: the system picks a free one, and the printed address names it.
    process = HostProcess(data_dir, log, env={"HUTCH_CONTROL_PORT": "0"})
    try:
        yield log
    finally:
        if process.process.poll() is None:
            process.terminate()


@pytest.fixture
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture
def browser_page() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            browser.close()


def _task_status(data_dir: Path, prompt: str) -> list[str]:
    statuses = []
    for inbound in (data_dir / "sessions").glob("*/*/inbound.db"):
        with read_transaction(inbound) as conn:
            for status, content in conn.execute("SELECT status, content FROM messages_in WHERE kind = 'task'"):
                if json.loads(content).get("prompt") == prompt:
                    statuses.append(status)
    return statuses


def test_log_in_watch_a_session_appear_cancel_a_task_approve_a_sender(
    data_dir: Path, host_log: Log, artifacts: Path, browser_page: Any
) -> None:
    log = host_log
    expect: Callable[..., Any] = sync_api.expect
    page = browser_page
    url, token = log.wait_for(URL_LINE).groups()
    step = 0

    def shot(name: str) -> None:
        nonlocal step
        step += 1
        page.screenshot(path=str(artifacts / f"{step}-{name}.png"), full_page=True)

    chat = ChatClient(data_dir / "cli.sock", sender="ada")
    try:
        # Without the token: the login form, and a wrong token is refused.
        page.goto(url)
        expect(page).to_have_url(f"{url}login")
        page.fill("input[name=token]", "not-the-token")
        page.click("button[type=submit]")
        expect(page.locator(".flash.failed")).to_contain_text("not the token")
        shot("wrong-token")
        page.fill("input[name=token]", token)
        page.click("button[type=submit]")
        expect(page).to_have_url(url)
        expect(page.locator("#sessions")).to_contain_text("No live sessions yet")
        shot("logged-in")

        # A chat message makes a session; the open page shows it without a reload.
        page.evaluate("window.notReloaded = true")
        assert chat.send("hello from the browser")["type"] == "ack"
        assert chat.next_message()["text"].startswith("mock: hello from the browser")
        expect(page.locator("#sessions tr.session")).to_have_count(1)
        expect(page.locator("#sessions tr.session")).to_contain_text("cli:local")
        page.click("#sessions details.messages summary")
        expect(page.locator("#sessions details.messages")).to_contain_text("mock: hello from the browser")
        assert page.evaluate("window.notReloaded") is True
        shot("session-appeared")

        # The agent schedules a task; it shows up, and the page cancels it.
        tomorrow = format_ts(utc_now() + timedelta(days=1))
        chat.send(f'!tool schedule_task {{"prompt": "water the plants", "process_after": "{tomorrow}"}}')
        assert "scheduled" in chat.next_message()["text"]
        task = page.locator("#tasks tr.task", has_text="water the plants")
        expect(task.locator("td.status")).to_have_text("pending")
        assert page.evaluate("window.notReloaded") is True
        shot("task-scheduled")
        task.locator("button[value=cancel]").click()
        expect(page.locator("#flash.ok")).to_be_visible()
        expect(task.locator("td.status")).to_have_text("cancelled")
        assert _task_status(data_dir, "water the plants") == ["cancelled"]
        shot("task-cancelled")

        # A stranger asks to talk in a chat that pairs; the page approves them.
        with open_store(data_dir / "hutch.db") as store:
            stranger_chat = messaging_groups.create(
                store, channel_type="telegram", platform_id="88", name="Sam", unknown_senders="pair"
            )
            request, _ = pairing_requests.open_request(store, stranger_chat.id, "88", "Sam Stranger")
        sender = page.locator(f'#wiring tr.sender[data-code="{request.code}"]')
        expect(sender).to_contain_text("Sam Stranger")
        shot("sender-waiting")
        sender.locator("button[value=approve]").click()
        expect(page.locator("#flash.ok")).to_contain_text(f"{request.code}: Sam Stranger (88) is approved")
        expect(sender).to_have_count(0)
        with open_store(data_dir / "hutch.db") as store:
            decided = pairing_requests.get(store, request.code)
            assert decided is not None
            assert decided.status == "approved"
            assert members.role_of(store, stranger_chat.id, "88") == "member"
            assert messaging_group_agents.wirings_for(store, stranger_chat.id)  # a direct chat: wired to main
        expect(page.locator("#wiring")).to_contain_text("telegram:88 (Sam)")
        shot("sender-approved")
    except BaseException:
        page.screenshot(path=str(artifacts / "failure.png"), full_page=True)
        print(log.tail())
        raise
    finally:
        chat.close()
