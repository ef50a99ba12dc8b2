"""Only the holder of the printed token gets in; a form posted from anywhere else, or
without the session's CSRF token, changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from actors.control.requests import ChangeTask
from actors.control_page.server import ControlPage
from tests.actors.control_page.conftest import Folder, Recorder, csrf_of, log_in, make_page, serve

pytestmark = pytest.mark.timeout(30)


def test_without_the_token_every_page_sends_to_the_login(data: Folder, execute: Recorder) -> None:
    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        front = await client.get("/", allow_redirects=False)
        assert front.status == 303
        assert front.headers["Location"] == "/login"
        login = await client.get("/login")
        assert login.status == 200
        assert 'name="token"' in await login.text()
        for path in ("/fragments", "/events"):
            assert (await client.get(path)).status == 401, path
        for path in ("/tasks", "/senders", "/logout"):
            response = await client.post(path, data={"verb": "cancel", "task": "water", "code": "X", "csrf": "x"})
            assert response.status == 401, path
        # Nothing of the data folder in any of it.
        assert "water the plants" not in await login.text()

    serve(make_page(data, execute), scenario)
    assert execute.requests == []


def test_a_wrong_token_or_a_forged_cookie_is_refused(data: Folder, execute: Recorder) -> None:
    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        wrong = await client.get("/?token=not-the-token", allow_redirects=False)
        assert wrong.status == 401
        assert "not the token" in await wrong.text()
        assert not wrong.cookies
        posted = await client.post("/login", data={"token": page.auth.token[:-1]}, allow_redirects=False)
        assert posted.status == 401
        assert not posted.cookies
        overlong = await client.post("/login", data={"token": "x" * 5000}, allow_redirects=False)
        assert overlong.status == 401
        cookie = {ControlPage.cookie_name(_request_for(client)): "session.0123456789abcdef"}
        forged = await client.get("/fragments", cookies=cookie)
        assert forged.status == 401

    serve(make_page(data, execute), scenario)


def _request_for(client: TestClient[Any, Any]) -> Any:
    """Something with the `url.port` the cookie's name is made from."""
    return type("Request", (), {"url": client.make_url("/")})()


def test_the_token_gives_an_httponly_samesite_strict_cookie(data: Folder, execute: Recorder) -> None:
    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        response = await client.get(f"/?token={page.auth.token}", allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == "/"  # the token leaves the address bar
        set_cookie = response.headers["Set-Cookie"]
        assert f"hutch_control_{client.port}=" in set_cookie
        assert "HttpOnly" in set_cookie
        assert "SameSite=Strict" in set_cookie
        assert page.auth.token not in set_cookie
        front = await client.get("/")
        assert front.status == 200
        assert "Scheduled tasks" in await front.text()
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert "script-src 'self'" in front.headers["Content-Security-Policy"]

    serve(make_page(data, execute), scenario)


def test_the_login_form_logs_in_and_log_out_ends_it(data: Folder, execute: Recorder) -> None:
    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        response = await client.post("/login", data={"token": page.auth.token}, allow_redirects=False)
        assert response.status == 303
        front = await client.get("/")
        assert front.status == 200
        out = await client.post("/logout", data={"csrf": csrf_of(await front.text())}, allow_redirects=False)
        assert out.status == 303
        assert out.headers["Location"] == "/login"
        assert (await client.get("/", allow_redirects=False)).status == 303

    serve(make_page(data, execute), scenario)


def test_a_post_needs_this_sessions_csrf_token_and_this_origin(data: Folder, execute: Recorder) -> None:
    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        csrf = await log_in(client, page)
        form = {"verb": "cancel", "task": "water", "session": data.local.id}
        missing = await client.post("/tasks", data=form, allow_redirects=False)
        assert missing.status == 403
        wrong = await client.post(
            "/tasks", data=form | {"csrf": csrf[:-1] + ("1" if csrf.endswith("0") else "0")}, allow_redirects=False
        )
        assert wrong.status == 403
        # Another session's token (another login) does not fit this session.
        other = page.auth.csrf_token("someone-else")
        assert (await client.post("/tasks", data=form | {"csrf": other}, allow_redirects=False)).status == 403
        foreign = await client.post(
            "/tasks", data=form | {"csrf": csrf}, headers={"Origin": "http://evil.example"}, allow_redirects=False
        )
        assert foreign.status == 403
        cross_site = await client.post(
            "/tasks", data=form | {"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}, allow_redirects=False
        )
        assert cross_site.status == 403
        assert execute.requests == []
        own_origin = f"http://127.0.0.1:{client.port}"
        good = await client.post(
            "/tasks", data=form | {"csrf": csrf}, headers={"Origin": own_origin}, allow_redirects=False
        )
        assert good.status == 303
        assert execute.requests == [ChangeTask(verb="cancel", task="water", session=data.local.id)]

    serve(make_page(data, execute), scenario)


def test_another_host_name_is_refused(data: Folder, execute: Recorder) -> None:
    """A site whose own name resolves to 127.0.0.1 (DNS rebinding) sends its own Host."""

    async def scenario(client: TestClient[Any, Any], page: ControlPage) -> None:
        response = await client.get(f"/?token={page.auth.token}", headers={"Host": "evil.example:80"})
        assert response.status == 421
        login = await client.get("/login", headers={"Host": f"localhost:{client.port}"})
        assert login.status == 200

    serve(make_page(data, execute), scenario)
