"""The webhook endpoint on loopback: a signed POST is handed over and answered once stored;
a bad signature, an unknown route, a body past the cap (as sent or as stored), JSON nested
too deep or another method is refused and nothing is handed over. Only a failure a retry can
fix is a 503."""

from __future__ import annotations

import http.client
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors.channels.base import ChannelError, InboundEvent, InboundWebhook
from actors.channels.webhook import MAX_BODY_BYTES, MAX_JSON_DEPTH, SIGNATURE_HEADER, WebhookChannel, signature
from actors.inbound_router import RoutingError
from actors.store.db import StoreError
from actors.store.webhook_routes import WebhookRoute
from protocol.content import MAX_CONTENT_BYTES, ContentError, WebhookIn, encode_content

pytestmark = pytest.mark.timeout(20)

SECRET = "s3cret-s3cret-s3cret"
ROUTES = {"deploys": WebhookRoute(route="deploys", secret=SECRET, agent_group_id="ag", created_at="then")}


class Handed:
    """on_event: records each event; resolves its future with a row-like object, or fails."""

    def __init__(self) -> None:
        self.events: list[InboundEvent] = []
        self.fail_with: Exception | None = None
        self._lock = threading.Lock()

    def __call__(self, event: InboundEvent) -> Any:
        with self._lock:
            self.events.append(event)
        future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        if self.fail_with is not None:
            future.set_exception((type(self.fail_with), self.fail_with, None))
        else:
            future.set(type("Row", (), {"id": "row-1"})())
        return future


@pytest.fixture
def handed() -> Handed:
    return Handed()


@pytest.fixture
def routes() -> dict[str, WebhookRoute]:
    """The routes the endpoint knows; a test may change them while it runs."""
    return dict(ROUTES)


@pytest.fixture
def channel(handed: Handed, routes: dict[str, WebhookRoute]) -> Iterator[WebhookChannel]:
    endpoint = WebhookChannel(routes.get, port=0)
    endpoint.start(handed)
    try:
        yield endpoint
    finally:
        endpoint.stop()


def post(
    channel: WebhookChannel, path: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", channel.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw or b"{}")
        except ValueError:  # aiohttp's own plain 404 for paths outside /hooks/
            return response.status, {"text": raw.decode()}
    finally:
        conn.close()


def signed(body: bytes, secret: str = SECRET, **extra: str) -> dict[str, str]:
    return {SIGNATURE_HEADER: signature(secret, body), "Content-Type": "application/json", **extra}


def test_a_signed_delivery_is_handed_over_and_accepted_once_stored(channel: WebhookChannel, handed: Handed) -> None:
    body = json.dumps({"ref": "main", "pusher": "ann"}).encode()
    status, answer = post(channel, "/hooks/deploys", body, signed(body, **{"X-GitHub-Event": "push"}))
    assert (status, answer) == (202, {"status": "accepted", "id": "row-1"})
    assert handed.events == [InboundWebhook(route="deploys", payload={"ref": "main", "pusher": "ann"}, event="push")]


def test_a_body_that_is_not_json_arrives_as_text(channel: WebhookChannel, handed: Handed) -> None:
    body = b"plain words"
    headers = {SIGNATURE_HEADER: signature(SECRET, body), "Content-Type": "text/plain"}
    assert post(channel, "/hooks/deploys", body, headers)[0] == 202
    assert handed.events == [InboundWebhook(route="deploys", payload="plain words")]


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "no signature"),
        ({SIGNATURE_HEADER: "sha256=" + "0" * 64}, "a wrong one"),
        ({SIGNATURE_HEADER: signature("another-secret-entirely", b"{}")}, "another route's secret"),
        ({SIGNATURE_HEADER: signature(SECRET, b"{}").upper()}, "the right digest, spelled otherwise"),
    ],
)
def test_a_bad_signature_is_401_and_nothing_is_handed_over(
    channel: WebhookChannel, handed: Handed, headers: dict[str, str], why: str
) -> None:
    assert post(channel, "/hooks/deploys", b"{}", headers)[0] == 401, why
    assert handed.events == []


def test_an_unknown_route_is_404(channel: WebhookChannel, handed: Handed) -> None:
    assert post(channel, "/hooks/nope", b"{}", signed(b"{}"))[0] == 404
    assert post(channel, "/hooks/", b"{}", signed(b"{}"))[0] == 404
    assert post(channel, "/other", b"{}", signed(b"{}"))[0] == 404
    assert handed.events == []


def test_a_body_past_the_cap_is_413_without_being_read(channel: WebhookChannel, handed: Handed) -> None:
    body = b"x" * (MAX_BODY_BYTES + 1)
    assert post(channel, "/hooks/deploys", body, signed(body))[0] == 413
    assert handed.events == []


def test_a_body_past_the_cap_without_a_length_is_413_too(channel: WebhookChannel, handed: Handed) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", channel.port, timeout=10)
    try:
        conn.putrequest("POST", "/hooks/deploys")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader(SIGNATURE_HEADER, "sha256=whatever")
        conn.endheaders()
        piece = b"x" * 65536
        for _ in range(MAX_BODY_BYTES // len(piece) + 2):
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.send(b"0\r\n\r\n")
        assert conn.getresponse().status == 413
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close before the whole body is sent: refused either way
    finally:
        conn.close()
    assert handed.events == []


def test_only_post_is_taken(channel: WebhookChannel, handed: Handed) -> None:
    assert post(channel, "/hooks/deploys", b"", method="GET")[0] == 405
    assert handed.events == []


@pytest.mark.parametrize(
    "failure",
    [
        RoutingError("the host is shutting down; please send that again in a moment"),
        pykka.ActorDeadError("the session stopped"),
        StoreError("database is locked"),
        OSError(28, "No space left on device"),
    ],
    ids=["shutting down", "session stopped", "database busy", "disk full"],
)
def test_a_delivery_the_host_cannot_take_now_is_503_so_the_sender_retries(
    channel: WebhookChannel, handed: Handed, failure: Exception
) -> None:
    handed.fail_with = failure
    assert post(channel, "/hooks/deploys", b"{}", signed(b"{}"))[0] == 503


def test_a_delivery_refused_by_the_protocols_caps_is_413_never_503(channel: WebhookChannel, handed: Handed) -> None:
    handed.fail_with = ContentError("messages_in row 'new' (kind 'webhook'): content is 300000 bytes, more than 262144")
    assert post(channel, "/hooks/deploys", b"{}", signed(b"{}"))[0] == 413


def test_a_failure_nobody_expected_is_500_not_a_retry(channel: WebhookChannel, handed: Handed) -> None:
    handed.fail_with = RuntimeError("a bug")
    assert post(channel, "/hooks/deploys", b"{}", signed(b"{}"))[0] == 500


def test_a_route_removed_while_its_request_was_handed_over_is_404(
    channel: WebhookChannel, handed: Handed, routes: dict[str, WebhookRoute]
) -> None:
    def route_gone(event: InboundEvent) -> Any:
        del routes["deploys"]  # `hutch hooks remove` between the endpoint's look-up and the router's
        handed.fail_with = RoutingError("there is no webhook route 'deploys'")
        return handed(event)

    channel._on_event = route_gone
    assert post(channel, "/hooks/deploys", b"{}", signed(b"{}"))[0] == 404


def test_a_route_made_or_removed_counts_from_the_next_request(
    channel: WebhookChannel, handed: Handed, routes: dict[str, WebhookRoute]
) -> None:
    secret = "another-secret-entirely"
    assert post(channel, "/hooks/builds", b"{}", signed(b"{}", secret))[0] == 404
    routes["builds"] = WebhookRoute(route="builds", secret=secret, agent_group_id="ag", created_at="now")
    assert post(channel, "/hooks/builds", b"{}", signed(b"{}", secret))[0] == 202
    del routes["builds"]
    assert post(channel, "/hooks/builds", b"{}", signed(b"{}", secret))[0] == 404
    assert handed.events == [InboundWebhook(route="builds", payload={})]


# --- what is stored: the protocol's cap, measured on the row -------------------------------


def _stored_size(payload: Any, route: str = "deploys") -> int:
    return len(encode_content(WebhookIn(source=route, payload=payload)).encode())


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'"' * (MAX_BODY_BYTES - 1), "quotes, each escaped as two bytes"),
        (b"\xff" * (MAX_BODY_BYTES - 1), "bytes that are not UTF-8, each stored as three"),
        (b"\x01" * (MAX_CONTENT_BYTES // 5), "control characters, each stored as six"),
    ],
)
def test_a_signed_body_under_the_cap_that_grows_past_it_once_stored_is_413(
    channel: WebhookChannel, handed: Handed, caplog: pytest.LogCaptureFixture, body: bytes, why: str
) -> None:
    caplog.set_level(logging.WARNING, logger="hutch.webhook")
    headers = {SIGNATURE_HEADER: signature(SECRET, body), "Content-Type": "text/plain"}
    status, answer = post(channel, "/hooks/deploys", body, headers)
    assert status == 413, why
    assert f"once stored, more than {MAX_CONTENT_BYTES}" in answer["error"]
    assert handed.events == []
    assert len([r for r in caplog.records if "refused a body" in r.getMessage()]) == 1


def test_a_body_that_just_fits_once_stored_is_taken(channel: WebhookChannel, handed: Handed) -> None:
    room = MAX_CONTENT_BYTES - _stored_size("")
    body = b"q" * min(room, MAX_BODY_BYTES)
    assert _stored_size(body.decode()) <= MAX_CONTENT_BYTES
    headers = {SIGNATURE_HEADER: signature(SECRET, body), "Content-Type": "text/plain"}
    assert post(channel, "/hooks/deploys", body, headers)[0] == 202
    assert handed.events == [InboundWebhook(route="deploys", payload=body.decode())]


def test_pretty_printed_json_is_measured_as_stored_compactly(channel: WebhookChannel, handed: Handed) -> None:
    payload = {"items": [{"n": number} for number in range(3000)]}
    body = json.dumps(payload, indent=8).encode()
    assert len(body) < MAX_BODY_BYTES
    assert post(channel, "/hooks/deploys", body, signed(body))[0] == 202
    assert handed.events == [InboundWebhook(route="deploys", payload=payload)]


# --- JSON nested too deep ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1),
        b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
    ],
    ids=["100k arrays", "objects one level too deep", "arrays one level too deep"],
)
def test_signed_json_nested_too_deep_is_400_with_one_log_line(
    channel: WebhookChannel, handed: Handed, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    caplog.set_level(logging.INFO, logger="hutch.webhook")
    status, answer = post(channel, "/hooks/deploys", body, signed(body))
    assert (status, answer) == (400, {"error": f"JSON nested deeper than {MAX_JSON_DEPTH} levels"})
    assert handed.events == []
    (line,) = [r.getMessage() for r in caplog.records if r.name == "hutch.webhook"]
    assert "refused a body for route 'deploys'" in line
    assert not any(r.exc_info for r in caplog.records)


def test_json_as_deep_as_allowed_and_brackets_inside_strings_are_taken(channel: WebhookChannel, handed: Handed) -> None:
    deepest = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert post(channel, "/hooks/deploys", deepest, signed(deepest))[0] == 202
    in_a_string = json.dumps({"diff": "[" * 5000 + '\\"{' * 100}).encode()
    assert post(channel, "/hooks/deploys", in_a_string, signed(in_a_string))[0] == 202
    assert handed.events[1] == InboundWebhook(route="deploys", payload=json.loads(in_a_string))


def test_a_port_in_use_is_a_clear_error(channel: WebhookChannel) -> None:
    second = WebhookChannel(ROUTES.get, port=channel.port)
    with pytest.raises(ChannelError, match="cannot listen for webhooks"):
        second.start(Handed())
