"""Authentication: password and token hashes, signed session cookies, who is asking.

Only the standard library: scrypt for passwords, SHA-256 for API tokens (random and
long, so a slow hash adds nothing), HMAC-SHA256 to sign the session cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

SESSION_COOKIE = "mcoflow_session"
ANONYMOUS = "web"  # who did it, when authentication is off
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class AuthSettings:
    """``users`` maps a user name to its ``hash_password()`` hash; ``api_tokens`` maps a
    ``hash_token()`` hash to the token's name (who it acts as). ``allowed_hosts``, if
    not empty, is the list of Host header names served (against DNS rebinding)."""

    enabled: bool = True
    users: Mapping[str, str] = field(default_factory=dict)
    api_tokens: Mapping[str, str] = field(default_factory=dict)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    session_seconds: int = 12 * 3600
    secure_cookies: bool = False
    allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def loopback(cls) -> AuthSettings:
        """The embedded default on 127.0.0.1: no login, loopback Host names only."""
        return cls(enabled=False, allowed_hosts=LOOPBACK_HOSTS)


# ---- hashes -----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash``, for the ``users`` setting."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


_DUMMY_HASH = hash_password(secrets.token_hex(8))


def verify_password(password: str, stored: str | None) -> bool:
    """Constant time whether the user exists or not (an unknown user checks a dummy)."""
    try:
        scheme, n, r, p, salt, digest = (stored or _DUMMY_HASH).split("$")
        if scheme != "scrypt":
            return False
        actual = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, _unb64(digest)) and stored is not None


def hash_token(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode()).hexdigest()


def new_api_token() -> tuple[str, str]:
    """A fresh API token and its hash: show the token once, store only the hash."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def token_owner(token: str, tokens: Mapping[str, str]) -> str | None:
    wanted = hash_token(token)
    owner = None
    for stored, name in tokens.items():
        if hmac.compare_digest(stored, wanted):
            owner = name
    return owner


# ---- sessions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    user: str | None  # None: not logged in (still carries a CSRF token)
    csrf: str
    expires: float

    @classmethod
    def new(cls, user: str | None, lifetime: int) -> Session:
        return cls(user, secrets.token_urlsafe(24), time.time() + lifetime)


def sign_session(session: Session, secret: bytes) -> str:
    body = _b64(json.dumps({"u": session.user, "c": session.csrf, "e": session.expires}).encode())
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def read_session(cookie: str | None, secret: bytes) -> Session | None:
    if not cookie or "." not in cookie:
        return None
    body, mac = cookie.rsplit(".", 1)
    expected = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        data = json.loads(_unb64(body))
        session = Session(data["u"], str(data["c"]), float(data["e"]))
    except (ValueError, KeyError, TypeError):
        return None
    if session.expires < time.time():
        return None
    return session


# ---- who is asking ----------------------------------------------------------------------

bearer = HTTPBearer(auto_error=False, description="an API token (`mcoflow` prints new ones)")


def api_user(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The API caller's name, or 401."""
    auth: AuthSettings = request.app.state.auth
    if not auth.enabled:
        return ANONYMOUS
    owner = token_owner(credentials.credentials, auth.api_tokens) if credentials else None
    if owner is None:
        raise HTTPException(
            401,
            "authentication required: send an API token as 'Authorization: Bearer TOKEN'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return f"api:{owner}"


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def page_user(request: Request) -> str:
    """The page visitor's name; not logged in (with authentication on) goes to /login."""
    auth: AuthSettings = request.app.state.auth
    if not auth.enabled:
        return ANONYMOUS
    session: Session | None = getattr(request.state, "session", None)
    if session is None or session.user is None or session.user not in auth.users:
        query = request.url.query
        raise LoginRequired(request.url.path + (f"?{query}" if query else ""))
    return session.user


def safe_next(url: str | None) -> str:
    """Only a path on this site, so the login form cannot redirect elsewhere."""
    if not url or not url.startswith("/") or url.startswith(("//", "/\\")):
        return "/"
    return url
