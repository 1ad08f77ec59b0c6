"""What `fss web` is configured with: where it listens and who may use it."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from fss.config import read_flag
from fss.errors import InvalidField


class Role(str, Enum):
    ADMIN = "admin"  # sees and changes everything
    VIEWER = "viewer"  # sees everything, changes nothing


@dataclass(frozen=True)
class WebUser:
    name: str
    # A plain password, or a hash made by `fss web hash-password` (starts with "$scrypt$").
    secret: str
    role: Role = Role.ADMIN


USER_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.@\-]{1,64}")
USERS_FORMAT = (
    "entries are name:password or name:password:role (role admin or viewer, lower case), "
    "separated by commas or newlines; a password containing ':' needs the role after it"
)


def parse_users(text: str) -> tuple[WebUser, ...]:
    """FSS_WEB_USERS: entries `name:password[:role]`, separated by commas or newlines.

    The name runs to the first ':'. If the rest holds no ':', it is the password and the role
    is admin. If it does, the text after its last ':' must be a role (admin or viewer, lower
    case) and everything before it is the password: `bob:pw:Viewer` is refused, not read as
    the password `pw:Viewer`, and a password with ':' in it is written `bob:a:b:admin`.
    A password can't hold a comma or a newline, nor begin or end with a space: use a hash
    from `fss web hash-password` (no ':' or ',' in it) for those. Errors name the entry by
    number and user, never a password or anything after the name."""
    users: list[WebUser] = []
    entries = [raw.strip() for raw in re.split(r"[,\n]", text)]
    for number, entry in enumerate((e for e in entries if e), start=1):
        user = parse_user_entry(number, entry)
        if any(u.name == user.name for u in users):
            raise InvalidField("FSS_WEB_USERS", f"user {user.name!r} is given twice")
        users.append(user)
    return tuple(users)


def parse_user_entry(number: int, entry: str) -> WebUser:
    name, separator, rest = entry.partition(":")
    if not separator or not USER_NAME_PATTERN.fullmatch(name):
        # The name may be a password typed without one: it is not printed.
        raise InvalidField(
            "FSS_WEB_USERS",
            f"entry {number} is not name:password[:role] with a name of letters, digits, "
            f"_.@- ({USERS_FORMAT})",
        )
    password, separator, role_text = rest.rpartition(":")
    if not separator:
        password, role_text = rest, Role.ADMIN.value
    role = next((r for r in Role if r.value == role_text), None)
    if role is None:
        raise InvalidField(
            "FSS_WEB_USERS",
            f"entry {number} (user {name!r}): the text after the last ':' is not a role "
            f"({USERS_FORMAT})",
        )
    if not password:
        raise InvalidField("FSS_WEB_USERS", f"entry {number} (user {name!r}) has an empty password")
    return WebUser(name, password, role)


@dataclass(frozen=True)
class WebToken:
    """A Bearer token for scripts, named so the audit trail tells them apart."""

    name: str
    secret: str
    role: Role = Role.ADMIN


MIN_TOKEN_LENGTH = 16
# FSS_WEB_TOKEN (one unnamed token, admin) is the token of this name.
LEGACY_TOKEN_NAME = "token"
TOKENS_FORMAT = (
    "entries are name:token:role (role admin or viewer, lower case; the token at least "
    f"{MIN_TOKEN_LENGTH} characters), separated by commas or newlines"
)


def parse_tokens(text: str) -> tuple[WebToken, ...]:
    """FSS_WEB_TOKENS: entries `name:token:role`, separated by commas or newlines. The name
    runs to the first ':', the role is the text after the last one, the token is what lies
    between. Errors name the entry by number and name, never the token."""
    tokens: list[WebToken] = []
    entries = [raw.strip() for raw in re.split(r"[,\n]", text)]
    for number, entry in enumerate((e for e in entries if e), start=1):
        token = parse_token_entry(number, entry)
        if any(t.name == token.name for t in tokens):
            raise InvalidField("FSS_WEB_TOKENS", f"token name {token.name!r} is given twice")
        if any(t.secret == token.secret for t in tokens):
            raise InvalidField(
                "FSS_WEB_TOKENS", f"entry {number} (token {token.name!r}) repeats another's token"
            )
        tokens.append(token)
    return tuple(tokens)


def parse_token_entry(number: int, entry: str) -> WebToken:
    name, separator, rest = entry.partition(":")
    secret, role_separator, role_text = rest.rpartition(":")
    if not separator or not role_separator or not USER_NAME_PATTERN.fullmatch(name):
        raise InvalidField(
            "FSS_WEB_TOKENS",
            f"entry {number} is not name:token:role with a name of letters, digits, _.@- "
            f"({TOKENS_FORMAT})",
        )
    role = next((r for r in Role if r.value == role_text), None)
    if role is None:
        raise InvalidField(
            "FSS_WEB_TOKENS",
            f"entry {number} (token {name!r}): the text after the last ':' is not a role "
            f"({TOKENS_FORMAT})",
        )
    if len(secret) < MIN_TOKEN_LENGTH:
        raise InvalidField(
            "FSS_WEB_TOKENS",
            f"entry {number} (token {name!r}): the token must be at least {MIN_TOKEN_LENGTH} "
            "characters",
        )
    return WebToken(name, secret, role)


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    users: tuple[WebUser, ...] = ()
    # FSS_WEB_TOKEN: a Bearer token for the API (admin rights), e.g. for scripts; the
    # audit trail names it "token".
    token: str = ""
    # FSS_WEB_TOKENS: named Bearer tokens with a role each.
    tokens: tuple[WebToken, ...] = ()
    # Anonymous access with admin rights; only with an explicit --no-auth.
    no_auth: bool = False
    # Keys the in-process digests of proven Basic passwords (sessions live in the database
    # and need no shared secret). Derived from the users and token when not given.
    secret: str = ""
    session_max_age_s: int = 12 * 3600
    # Set the cookie's Secure flag (serve behind HTTPS).
    secure_cookies: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidField("port", "must be 0..65535")
        if self.token and len(self.token) < MIN_TOKEN_LENGTH:
            raise InvalidField("FSS_WEB_TOKEN", f"must be at least {MIN_TOKEN_LENGTH} characters")
        if self.token and any(t.name == LEGACY_TOKEN_NAME for t in self.tokens):
            raise InvalidField(
                "FSS_WEB_TOKENS", f"the name {LEGACY_TOKEN_NAME!r} is FSS_WEB_TOKEN's; "
                "name the token otherwise or drop FSS_WEB_TOKEN"
            )
        if self.token and any(t.secret == self.token for t in self.tokens):
            raise InvalidField("FSS_WEB_TOKENS", "a token repeats FSS_WEB_TOKEN")

    @property
    def auth_configured(self) -> bool:
        return bool(self.users or self.token or self.tokens)

    @property
    def bearer_tokens(self) -> tuple[WebToken, ...]:
        """Every Bearer token: FSS_WEB_TOKEN (named "token", admin) and FSS_WEB_TOKENS."""
        legacy = (WebToken(LEGACY_TOKEN_NAME, self.token),) if self.token else ()
        return legacy + self.tokens

    @property
    def signing_key(self) -> bytes:
        if self.secret:
            return hashlib.sha256(b"fss-web-secret\0" + self.secret.encode()).digest()
        material = "\0".join(
            [self.token] + [f"{u.name}:{u.secret}:{u.role.value}" for u in self.users]
            + [f"{t.name}:{t.secret}:{t.role.value}" for t in self.tokens]
        )
        return hashlib.sha256(b"fss-web-derived\0" + material.encode()).digest()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> WebSettings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "users": parse_users(env.get("FSS_WEB_USERS", "")),
            "token": env.get("FSS_WEB_TOKEN", ""),
            "tokens": parse_tokens(env.get("FSS_WEB_TOKENS", "")),
            "secret": env.get("FSS_WEB_SECRET", ""),
            # Unknown values fail closed (an error naming the variable), never "off".
            "secure_cookies": read_flag("FSS_WEB_SECURE_COOKIES", env),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
