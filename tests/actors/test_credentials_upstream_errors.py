"""The credential proxy's log says why the API refused an agent's request: the upstream
status and the API's own error type and message, in one bounded line."""

from __future__ import annotations

import gzip
import json
import logging
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from actors.credentials import CredentialProxy, _upstream_error
from tests.fakes.fake_messages_api import FakeMessagesAPI, FakeReply
from tests.fakes.probes import LineWaiter

pytestmark = pytest.mark.timeout(20)

LOGGER = "hutch.credentials"


@pytest.fixture
def socket_path(api: FakeMessagesAPI) -> Iterator[Path]:
    # tmp_path can be too long for an AF_UNIX path; a short temp dir is not.
    with tempfile.TemporaryDirectory(prefix="hutch-") as folder:
        proxy = CredentialProxy(api.base_url, api_key="sk-real")
        path = Path(folder) / "proxy.sock"
        proxy.open_socket("5e55104aabcdef", "family", path)
        yield path
        proxy.stop()


def post(path: Path, body: dict[str, object]) -> httpx2.Response:
    with httpx2.Client(transport=httpx2.HTTPTransport(uds=str(path)), base_url="http://proxy.local") as client:
        return client.post("/v1/messages", json=body)


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER and "->" in r.getMessage()]


def test_an_upstream_refusal_is_logged_with_the_apis_reason(
    api: FakeMessagesAPI, socket_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    # Logged once the body is relayed, so possibly after the client has it all.
    waiter = LineWaiter(" -> 404 ", timeout=10)
    logging.getLogger(LOGGER).addHandler(waiter)
    api.enqueue(FakeReply.error(404, "model: claude-nope"))

    try:
        response = post(socket_path, {"model": "claude-nope", "max_tokens": 1, "messages": []})
        waiter.wait()
    finally:
        logging.getLogger(LOGGER).removeHandler(waiter)

    # The agent still gets the API's answer as it was.
    assert response.status_code == 404
    assert response.json()["error"] == {"type": "not_found_error", "message": "model: claude-nope"}
    assert logged(caplog) == [
        (logging.WARNING, "[family/5e55104a] POST /v1/messages -> 404 not_found_error: model: claude-nope")
    ]


def test_a_success_is_still_one_info_line(
    api: FakeMessagesAPI, socket_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    assert post(socket_path, {"model": "m", "max_tokens": 1, "messages": []}).status_code == 200

    assert logged(caplog) == [(logging.INFO, "[family/5e55104a] POST /v1/messages -> 200")]


def api_error(error_type: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": error_type, "message": message}}).encode()


@pytest.mark.parametrize(
    ("body", "encoding", "expected"),
    [
        (api_error("authentication_error", "invalid x-api-key"), None, "authentication_error: invalid x-api-key"),
        (gzip.compress(api_error("permission_error", "no")), "gzip", "permission_error: no"),
        (zlib.compress(api_error("not_found_error", "model: x")), "deflate", "not_found_error: model: x"),
        (b"<html>\n<body>Bad Gateway</body>\n</html>", None, "<html> <body>Bad Gateway</body> </html>"),
        (b"", None, "(no body)"),
        (b"\x1f\x8b not really gzip", "gzip", "(a gzip error body that does not decompress)"),
        (b"...", "br", "(an error body in br)"),
        # An agent cannot forge a log line through the API's words: control characters are escaped.
        (api_error("invalid_request_error", "bad\x1b[31m"), None, "invalid_request_error: bad\\x1b[31m"),
    ],
)
def test_the_reason_is_read_from_whatever_the_body_is(body: bytes, encoding: str | None, expected: str) -> None:
    assert _upstream_error(body, encoding) == expected


def test_the_reason_is_one_bounded_line() -> None:
    shown = _upstream_error(api_error("invalid_request_error", "line one\nline two " + "y" * 5000), None)

    assert shown.startswith("invalid_request_error: line one line two yyy")
    assert "\n" not in shown
    assert len(shown) < 400
