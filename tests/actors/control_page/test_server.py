"""The page as the host runs it: its own thread and loop on 127.0.0.1, a clear error when
its port is taken, and its setting."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path

import pytest

from actors.config import HostConfig, load_config
from actors.control_page import ControlPage, ControlPageError
from tests.actors.control_page.conftest import Folder, Recorder

pytestmark = pytest.mark.timeout(30)


def _get(port: int, path: str, cookie: str | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_the_page_serves_from_a_thread_of_its_own_until_stopped(data: Folder, execute: Recorder) -> None:
    config = HostConfig(data_dir=data.path, control_port=0)
    page = ControlPage.for_host(config, execute)
    page.start()
    try:
        assert page.url == f"http://127.0.0.1:{page.port}/"
        assert page.login_url == f"{page.url}?token={page.auth.token}"
        assert _get(page.port, "/").status == 303
        login = _get(page.port, f"/?token={page.auth.token}")
        assert login.status == 303
        cookie = login.getheader("Set-Cookie", "").split(";", 1)[0]
        front = _get(page.port, "/", cookie)
        assert front.status == 200
    finally:
        page.stop()
    with pytest.raises(OSError):
        _get(page.port, "/login")


def test_a_taken_port_is_a_clear_error(data: Folder, execute: Recorder) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        page = ControlPage.for_host(HostConfig(data_dir=data.path, control_port=port), execute)
        with pytest.raises(ControlPageError, match=rf"127\.0\.0\.1:{port} \(HUTCH_CONTROL_PORT\)") as raised:
            page.start()
        assert raised.value.retryable is False
        page.stop()  # harmless after a failed start


def test_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    assert load_config([], env={}).control_port is None
    assert load_config([], env={"HUTCH_CONTROL_PORT": "8123"}).control_port == 8123
