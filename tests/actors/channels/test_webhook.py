"""The webhook endpoint on loopback: a signed POST is handed over and answered once stored;
a bad signature, an unknown route, a body past the cap or another method is refused and
nothing is handed over."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors.channels.base import ChannelError, InboundEvent, InboundWebhook
from actors.channels.webhook import MAX_BODY_BYTES, SIGNATURE_HEADER, WebhookChannel, signature
from actors.store.webhook_routes import WebhookRoute

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
def channel(handed: Handed) -> Iterator[WebhookChannel]:
    endpoint = WebhookChannel(ROUTES.get, port=0)
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


def test_a_delivery_the_host_cannot_take_is_503_so_the_sender_retries(channel: WebhookChannel, handed: Handed) -> None:
    handed.fail_with = RuntimeError("the host is shutting down")
    assert post(channel, "/hooks/deploys", b"{}", signed(b"{}"))[0] == 503


def test_a_port_in_use_is_a_clear_error(channel: WebhookChannel) -> None:
    second = WebhookChannel(ROUTES.get, port=channel.port)
    with pytest.raises(ChannelError, match="cannot listen for webhooks"):
        second.start(Handed())
