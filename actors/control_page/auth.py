"""Who may use the control page: whoever holds the token the host printed at start.

The token is exchanged once (a form, or `?token=` in the printed URL) for a session cookie,
HttpOnly and SameSite=Strict. Nothing is kept per session on the server: the cookie is a
random session id with an HMAC under a key made at start, and the session's CSRF token is
another HMAC of that id, so every check is a recomputation compared in constant time, and a
restart (a new key) ends every session."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

# Past this a value is not ours; refused before any hashing.
_MAX_VALUE = 256


def _mac(key: bytes, purpose: str, value: str) -> str:
    return hmac.new(key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def same(given: str, expected: str) -> bool:
    return len(given) <= _MAX_VALUE and hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True)
class Auth:
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def token_matches(self, given: str) -> bool:
        return same(given, self.token)

    def new_cookie(self) -> str:
        session = secrets.token_urlsafe(16)
        return f"{session}.{_mac(self.key, 'session', session)}"

    def session_of(self, cookie: str | None) -> str | None:
        """The session id a genuine cookie carries; None for anything else."""
        if not cookie or len(cookie) > _MAX_VALUE or "." not in cookie:
            return None
        session, mac = cookie.split(".", 1)
        return session if same(mac, _mac(self.key, "session", session)) else None

    def csrf_token(self, session: str) -> str:
        return _mac(self.key, "csrf", session)

    def csrf_matches(self, session: str, given: str) -> bool:
        return same(given, self.csrf_token(session))
