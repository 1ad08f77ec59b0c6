"""What `fss web` is configured with: where it listens and who may use it."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

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


def parse_users(text: str) -> tuple[WebUser, ...]:
    """FSS_WEB_USERS: entries `name:password[:role]`, separated by commas or newlines; the
    password may be a hash from `fss web hash-password`; role is admin (default) or viewer."""
    users: list[WebUser] = []
    for raw in re.split(r"[,\n]", text):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, rest = entry.partition(":")
        if not sep or not USER_NAME_PATTERN.fullmatch(name):
            raise InvalidField(
                "FSS_WEB_USERS", "each entry is name:password[:role], name of letters, digits, _.@-"
            )
        role = Role.ADMIN
        for candidate in Role:
            if rest.endswith(":" + candidate.value):
                rest, role = rest[: -len(candidate.value) - 1], candidate
        if not rest:
            raise InvalidField("FSS_WEB_USERS", f"user {name!r} has an empty password")
        if any(u.name == name for u in users):
            raise InvalidField("FSS_WEB_USERS", f"user {name!r} is given twice")
        users.append(WebUser(name, rest, role))
    return tuple(users)


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    users: tuple[WebUser, ...] = ()
    # FSS_WEB_TOKEN: a Bearer token for the API (admin rights), e.g. for scripts.
    token: str = ""
    # Anonymous access with admin rights; only with an explicit --no-auth.
    no_auth: bool = False
    # Signs session cookies; every replica behind one address needs the same. Derived from
    # the users and token when not given, so replicas with the same config agree.
    secret: str = ""
    session_max_age_s: int = 12 * 3600
    # Set the cookie's Secure flag (serve behind HTTPS).
    secure_cookies: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidField("port", "must be 0..65535")
        if self.token and len(self.token) < 16:
            raise InvalidField("FSS_WEB_TOKEN", "must be at least 16 characters")

    @property
    def auth_configured(self) -> bool:
        return bool(self.users or self.token)

    @property
    def signing_key(self) -> bytes:
        if self.secret:
            return hashlib.sha256(b"fss-web-secret\0" + self.secret.encode()).digest()
        material = "\0".join(
            [self.token] + [f"{u.name}:{u.secret}:{u.role.value}" for u in self.users]
        )
        return hashlib.sha256(b"fss-web-derived\0" + material.encode()).digest()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> WebSettings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "users": parse_users(env.get("FSS_WEB_USERS", "")),
            "token": env.get("FSS_WEB_TOKEN", ""),
            "secret": env.get("FSS_WEB_SECRET", ""),
            "secure_cookies": env.get("FSS_WEB_SECURE_COOKIES", "") in ("1", "true", "yes"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
