"""Who is asking: users and roles, password hashes, session cookies, Basic and Bearer, CSRF.

Browsers log in through a form and get a signed session cookie; scripts use HTTP Basic with
the same users (as Flower does) or FSS_WEB_TOKEN as a Bearer token. A state-changing request
authenticated by a cookie must carry the session's CSRF token; every state-changing request
from another origin is refused, whatever authenticated it (browsers replay Basic credentials
too).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request

from fss.web.config import Role, WebSettings, WebUser

SESSION_COOKIE = "fss_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HASH_PREFIX = "$scrypt$"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MAX_VERIFIED = 1024


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`$scrypt$n=16384;r=8;p=1$<salt>$<hash>`: what `fss web hash-password` prints.

    No commas: FSS_WEB_USERS separates its entries with commas."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return (
        f"{HASH_PREFIX}n={SCRYPT_N};r={SCRYPT_R};p={SCRYPT_P}$"
        f"{_b64(salt)}${_b64(digest)}"
    )


def password_matches(secret: str, password: str) -> bool:
    if not secret.startswith(HASH_PREFIX):
        return hmac.compare_digest(secret.encode(), password.encode())
    try:
        params, salt, expected = secret[len(HASH_PREFIX):].split("$")
        cost = dict(item.split("=") for item in params.replace(",", ";").split(";"))
        digest = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(cost["n"]), r=int(cost["r"]),
            p=int(cost["p"]), maxmem=256 * 1024 * 1024,
        )
    except (ValueError, KeyError, binascii.Error):
        return False
    return hmac.compare_digest(digest, _unb64(expected))


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    # How the request proved who it is: "session", "basic", "token" or "anonymous".
    method: str
    csrf: str = ""

    @property
    def can_change(self) -> bool:
        return self.role is Role.ADMIN


ANONYMOUS = Principal("anonymous", Role.ADMIN, "anonymous")


class Authenticator:
    """Resolves a request to a Principal; shared by every route through `app.state`."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self._users = {u.name: u for u in settings.users}
        self._key = settings.signing_key
        self._decoy = ""
        # Keyed digests of (name, password) pairs that matched a hash: HTTP Basic sends the
        # password with every request, and scrypt costs ~50 ms per check.
        self._verified: set[bytes] = set()

    def check_password(self, name: str, password: str) -> WebUser | None:
        user = self._users.get(name)
        if user is None:
            # Same work for a name that does not exist, so timing does not tell names apart.
            password_matches(self._decoy_hash(), password)
            return None
        if not user.secret.startswith(HASH_PREFIX):
            return user if password_matches(user.secret, password) else None
        pair = hmac.new(self._key, f"{name}\0{user.secret}\0{password}".encode(), "sha256")
        if pair.digest() in self._verified:
            return user
        if not password_matches(user.secret, password):
            return None
        if len(self._verified) >= MAX_VERIFIED:
            self._verified.clear()
        self._verified.add(pair.digest())
        return user

    def _decoy_hash(self) -> str:
        """Checked for names that do not exist, so they cost what a real check does (made on
        first use: a hash costs ~50 ms, too much for every app a test builds)."""
        if not self._decoy:
            self._decoy = hash_password(secrets.token_urlsafe(12))
        return self._decoy

    def identify(self, request: Request) -> Principal | None:
        if self.settings.no_auth:
            return ANONYMOUS
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and self.settings.token:
            if hmac.compare_digest(credentials.strip().encode(), self.settings.token.encode()):
                return Principal("token", Role.ADMIN, "token")
            return None
        if scheme.lower() == "basic":
            return self._basic(credentials.strip())
        return self.session_principal(request.cookies.get(SESSION_COOKIE, ""))

    def _basic(self, credentials: str) -> Principal | None:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, _, password = decoded.partition(":")
        user = self.check_password(name, password)
        return Principal(user.name, user.role, "basic") if user else None

    # ---- session cookies -----------------------------------------------------------------

    def session_cookie(self, user: WebUser, now: float | None = None) -> str:
        payload = {
            "u": user.name,
            "exp": int((now or time.time()) + self.settings.session_max_age_s),
            "csrf": secrets.token_urlsafe(24),
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def session_principal(self, cookie: str, now: float | None = None) -> Principal | None:
        body, _, signature = cookie.partition(".")
        if not body or not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            payload = json.loads(_unb64(body))
            name, expires, csrf = str(payload["u"]), int(payload["exp"]), str(payload["csrf"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        user = self._users.get(name)
        if user is None or expires < (now or time.time()):
            return None
        return Principal(user.name, user.role, "session", csrf)

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---- FastAPI dependencies ----------------------------------------------------------------


class LoginRequired(Exception):
    """No valid credentials: pages redirect to the login form, the API answers 401."""


def authenticator(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.authenticator
    return auth


def require_viewer(request: Request) -> Principal:
    """Any signed-in user; for pages and API calls that only read."""
    principal = authenticator(request).identify(request)
    if principal is None:
        raise LoginRequired()
    request.state.principal = principal
    return principal


async def require_admin(
    request: Request, principal: Annotated[Principal, Depends(require_viewer)]
) -> Principal:
    """A user who may change things, on a request that is not forged from another site."""
    if not principal.can_change:
        raise HTTPException(403, f"user {principal.name!r} is a viewer and cannot change anything")
    if request.method not in SAFE_METHODS:
        refuse_cross_site(request)
        if principal.method == "session":
            await require_csrf_token(request, principal)
    return principal


def refuse_cross_site(request: Request) -> None:
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(403, "cross-site request refused")
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, f"request from origin {origin} refused")


async def require_csrf_token(request: Request, principal: Principal) -> None:
    given = request.headers.get(CSRF_HEADER, "")
    if not given and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        given = str((await request.form()).get(CSRF_FIELD, ""))
    if not given or not hmac.compare_digest(given, principal.csrf):
        raise HTTPException(403, "csrf_token: missing or wrong; reload the page")


Viewer = Annotated[Principal, Depends(require_viewer)]
Admin = Annotated[Principal, Depends(require_admin)]
