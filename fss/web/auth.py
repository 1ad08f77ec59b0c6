"""Who is asking: users and roles, password hashes, sessions, Basic and Bearer, CSRF, and the
lock-out after refused logins.

Browsers log in through a form and get a session cookie (the session lives in the database:
logout ends it on every replica); scripts use HTTP Basic with
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
import logging
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request

from fss.domain import login_throttle
from fss.store import audit, web_sessions
from fss.store.audit import Actor
from fss.web.config import Role, WebSettings, WebUser
from fss.web.context import WebContext

log = logging.getLogger("fss.web.auth")

SESSION_COOKIE = "fss_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HASH_PREFIX = "$scrypt$"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MAX_VERIFIED = 1024
# What the login form accepts as a user name; longer Basic names are cut to it.
MAX_NAME_LENGTH = 200


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


class LoginThrottled(Exception):
    """Too many refused logins for the user name or the address: refused unchecked."""

    def __init__(self, until: datetime, now: datetime) -> None:
        self.retry_after_s = max(1, math.ceil((until - now).total_seconds()))
        super().__init__(
            f"too many failed logins for this user or address; try again in "
            f"{self.retry_after_s} s"
        )


@dataclass(frozen=True)
class NewSession:
    cookie: str
    csrf: str


class Authenticator:
    """Resolves a request to a Principal; shared by every route through `app.state`."""

    def __init__(self, settings: WebSettings, context: WebContext) -> None:
        self.settings = settings
        self.context = context
        self._users = {u.name: u for u in settings.users}
        self._key = settings.signing_key
        self._decoy = ""
        # Keyed digests of (name, password) pairs that matched: HTTP Basic sends the password
        # with every request, scrypt costs ~50 ms per check, and a pair proven right skips
        # the lock-out check (a script keeps working while someone guesses at its user).
        self._verified: set[bytes] = set()

    # ---- passwords and throttling -------------------------------------------------------

    def log_in(self, name: str, password: str, address: str, how: str) -> WebUser | None:
        """The user if the password is right; None (logged, counted) if not; LoginThrottled
        (logged, not counted, password unchecked) while the name or address is locked."""
        user = self._users.get(name)
        if user is not None and self._pair(user, password) in self._verified:
            return user
        keys = (login_throttle.user_key(name), login_throttle.address_key(address))
        now = self.context.clock.now()
        with self.context.engine.connect() as conn:
            until = web_sessions.locked_until(conn, keys, now)
        if until is not None:
            log.warning("login refused (%s): user %r from %s is locked until %s", how, name,
                        address, until.isoformat(timespec="seconds"))
            raise LoginThrottled(until, now)
        user = self.check_password(name, password)
        reason = "wrong password" if name in self._users else "unknown user"
        with self.context.engine.begin() as conn:
            if user is None:
                for key in keys:
                    web_sessions.record_failure(
                        conn, key, now, now - login_throttle.FORGET_AFTER,
                        login_throttle.lock_schedule(now),
                    )
                # In the failure's transaction; while locked (above) nothing is recorded.
                kind = "basic" if how == "HTTP Basic" else "session"
                audit.record(conn, Actor(name, kind, address), "login.refused", now,
                             detail={"reason": reason, "via": how})
            else:
                web_sessions.clear_failures(conn, keys[0])
        if user is None:
            log.warning("login refused (%s): user %r from %s: %s", how, name, address, reason)
        return user

    def check_password(self, name: str, password: str) -> WebUser | None:
        user = self._users.get(name)
        if user is None:
            # Same work for a name that does not exist, so timing does not tell names apart.
            password_matches(self._decoy_hash(), password)
            return None
        pair = self._pair(user, password)
        if pair in self._verified:
            return user
        if not password_matches(user.secret, password):
            return None
        if len(self._verified) >= MAX_VERIFIED:
            self._verified.clear()
        self._verified.add(pair)
        return user

    def _pair(self, user: WebUser, password: str) -> bytes:
        return hmac.new(
            self._key, f"{user.name}\0{user.secret}\0{password}".encode(), "sha256"
        ).digest()

    def _decoy_hash(self) -> str:
        """Checked for names that do not exist, so they cost what a real check does (made on
        first use: a hash costs ~50 ms, too much for every app a test builds)."""
        if not self._decoy:
            self._decoy = hash_password(secrets.token_urlsafe(12))
        return self._decoy

    # ---- requests -----------------------------------------------------------------------

    def identify(self, request: Request) -> Principal | None:
        if self.settings.no_auth:
            return ANONYMOUS
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and self.settings.bearer_tokens:
            given = credentials.strip().encode()
            # Every token compared (no early exit): the time taken tells none of them apart.
            matches = [t for t in self.settings.bearer_tokens
                       if hmac.compare_digest(given, t.secret.encode())]
            if matches:
                return Principal(matches[0].name, matches[0].role, "token")
            log.warning("bearer token refused from %s", client_address(request))
            return None
        if scheme.lower() == "basic":
            return self._basic(credentials.strip(), client_address(request))
        return self.session_principal(request.cookies.get(SESSION_COOKIE, ""))

    def _basic(self, credentials: str, address: str) -> Principal | None:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        name, _, password = decoded.partition(":")
        user = self.log_in(name[:MAX_NAME_LENGTH], password, address, "HTTP Basic")
        return Principal(user.name, user.role, "basic") if user else None

    # ---- server-side sessions -------------------------------------------------------------
    #
    # The cookie is `<token>.<user name>`, the token 256 random bits. The row's key is
    # SHA-256 of the token and a fingerprint of the user's configured credential, so the
    # database holds nothing a cookie can be made from, and a changed password (or a user
    # removed) makes every cookie of the old one miss: those sessions are over on every
    # replica that runs the new config, with no step at startup.

    def start_session(self, user: WebUser, address: str | None = None) -> NewSession:
        token = secrets.token_urlsafe(32)
        now = self.context.clock.now()
        with self.context.engine.begin() as conn:
            web_sessions.prune(conn, now, now - login_throttle.FORGET_AFTER)
            web_sessions.start_session(
                conn, self._token_hash(token, user), user.name, now,
                now + timedelta(seconds=self.settings.session_max_age_s),
            )
            audit.record(conn, Actor(user.name, "session", address), "login", now)
        return NewSession(f"{token}.{user.name}", csrf_of(token))

    def session_principal(self, cookie: str) -> Principal | None:
        found = self._session_of(cookie)
        if found is None:
            return None
        token, user = found
        with self.context.engine.connect() as conn:
            name = web_sessions.session_user(
                conn, self._token_hash(token, user), self.context.clock.now()
            )
        if name != user.name:
            return None
        return Principal(user.name, user.role, "session", csrf_of(token))

    def end_session(self, cookie: str, address: str | None = None) -> bool:
        """Log out: the session ends on the server, so a copy of the cookie is refused too."""
        found = self._session_of(cookie)
        if found is None:
            return False
        token, user = found
        now = self.context.clock.now()
        with self.context.engine.begin() as conn:
            ended = web_sessions.end_session(conn, self._token_hash(token, user), now)
            if ended:
                audit.record(conn, Actor(user.name, "session", address), "logout", now)
            return ended

    def _session_of(self, cookie: str) -> tuple[str, WebUser] | None:
        token, _, name = cookie.partition(".")
        user = self._users.get(name)
        if user is None or len(token) < 32:
            return None
        return token, user

    @staticmethod
    def _token_hash(token: str, user: WebUser) -> str:
        credential = hashlib.sha256(f"{user.name}\0{user.secret}".encode()).hexdigest()
        return hashlib.sha256(f"{token}\0{credential}".encode()).hexdigest()


def csrf_of(token: str) -> str:
    """The session's CSRF token: derived from the cookie's token (another site can send the
    cookie but cannot read it, so it cannot know this)."""
    return _b64(hashlib.sha256(b"fss-csrf\0" + token.encode()).digest())


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


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
