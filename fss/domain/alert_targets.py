"""Alert targets: where alerts go, what each kind of receiver is sent, how its answer reads.

Six kinds: a generic `webhook`, the chat robots `slack`, `dingtalk`, `wecom` and `feishu`
(Lark, which speaks the same protocol), and `email` over SMTP. A target's settings are
checked here (unknown keys refused: a typo must not switch signing off silently), shown
without their secrets (`public_config`), and turned into the request or email a receiver
gets. Pure: no I/O, the time used for signing is a parameter (fss.alerting sends).

The generic webhook
-------------------
An HTTP POST of `Message.to_json()` as UTF-8 JSON (Content-Type: application/json) with
these headers:

- `X-FSS-Idempotency-Key: <id>`: the same for every attempt of one delivery (also the body's
  "id"); a receiver drops a request whose key it has seen (a retry after a timeout, or the
  peer scheduler sending what a killed one already sent).
- `X-FSS-Signature: t=<unix seconds>,v1=<hex>` when the target has a `secret`, where
  `<hex>` is the lowercase hex HMAC-SHA256, keyed with the secret (UTF-8), of the bytes
  `<t>.` followed by the raw request body (the scheme Stripe uses). To verify: split the
  header at ",", recompute the HMAC over `f"{t}.".encode() + raw_body`, compare in constant
  time (hmac.compare_digest) and refuse a `t` more than a few minutes from your clock
  (a replayed request).
- the target's own `headers` (e.g. `Authorization: Bearer ...`); they cannot replace the
  headers above, Host or Content-Length.

A 2xx answer is a delivery; anything else (or none within the timeout) is retried.

The chat robots
---------------
- slack: `{"text": ...}` in Slack's mrkdwn (the token is in the URL).
- dingtalk: a markdown message; with `secret` (the robot's "SEC..." signing secret) the
  URL gets `timestamp=<ms>&sign=<urlencoded base64 HMAC-SHA256(secret, f"{ms}\\n{secret}")>`
  (DingTalk's "加签"). Success: JSON errcode 0.
- wecom: a markdown message (the key is in the URL). Success: JSON errcode 0.
- feishu: a text message; with `secret` the body carries "timestamp" (seconds) and
  "sign" = base64 HMAC-SHA256 keyed with f"{timestamp}\\n{secret}" over no bytes (Feishu's
  signature check). Success: JSON code (or StatusCode) 0.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from typing import Any
from urllib.parse import quote_plus, urlsplit

from fss.domain.alerts import Message, validate_rule_list
from fss.errors import InvalidField

WEBHOOK = "webhook"
SLACK = "slack"
DINGTALK = "dingtalk"
WECOM = "wecom"
FEISHU = "feishu"
EMAIL = "email"
KINDS = (WEBHOOK, SLACK, DINGTALK, WECOM, FEISHU, EMAIL)
HTTP_KINDS = (WEBHOOK, SLACK, DINGTALK, WECOM, FEISHU)
# Other names a kind is known by.
KIND_ALIASES = {"lark": FEISHU, "wechat-work": WECOM, "smtp": EMAIL}

STARTTLS = "starttls"
TLS = "tls"
NO_TLS = "none"
SECURITY_PORTS = {STARTTLS: 587, TLS: 465, NO_TLS: 25}

# The settings each kind takes; anything else is refused.
CONFIG_KEYS: dict[str, frozenset[str]] = {
    WEBHOOK: frozenset({"url", "secret", "headers"}),
    SLACK: frozenset({"url"}),
    DINGTALK: frozenset({"url", "secret"}),
    WECOM: frozenset({"url"}),
    FEISHU: frozenset({"url", "secret"}),
    EMAIL: frozenset({"host", "port", "security", "user", "password", "from", "to"}),
}
# Settings never shown: masked in public_config, scrubbed from errors and answers.
SECRET_KEYS = frozenset({"secret", "password"})
MASK = "***"

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# RFC 9110 token characters: what a header name may be made of.
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$")
# Headers fss sets itself (or the HTTP client does): a target's own may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "x-fss-signature",
        "x-fss-idempotency-key",
    }
)
ADDRESS = re.compile(r"^[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+$")
HOST = re.compile(r"^[A-Za-z0-9_.:\[\]-]{1,253}$")

MAX_URL = 2048
MAX_SECRET = 512
MAX_HEADER_VALUE = 4096
MAX_HEADERS = 32
MAX_RECIPIENTS = 100
MAX_ANSWER = 2000
DEFAULT_RATE_PER_MIN = 20
MAX_RATE_PER_MIN = 10_000
# What each robot takes in one message, with room to spare (WeCom counts bytes).
WECOM_MAX_BYTES = 4000
DINGTALK_MAX_BYTES = 18_000
SLACK_MAX_CHARS = 35_000
FEISHU_MAX_BYTES = 28_000


@dataclass(frozen=True)
class TargetSpec:
    """A target as an admin defines it. `rules` None: told about every rule."""

    name: str
    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    is_default: bool = True
    rules: frozenset[str] | None = None
    rate_per_min: int = DEFAULT_RATE_PER_MIN

    def validated(self) -> TargetSpec:
        """The same target with its kind and settings normalised (email's port and security
        filled in); InvalidField naming the first bad field otherwise."""
        if not isinstance(self.name, str) or not NAME.match(self.name):
            raise InvalidField("name", "1-64 characters of A-Z a-z 0-9 _ . -")
        kind = self.kind.strip().lower() if isinstance(self.kind, str) else ""
        kind = KIND_ALIASES.get(kind, kind)
        if kind not in KINDS:
            raise InvalidField("kind", f"unknown kind {self.kind!r} (kinds: {', '.join(KINDS)})")
        if not isinstance(self.config, Mapping):
            raise InvalidField("config", "must be a mapping of settings")
        unknown = sorted(str(key) for key in self.config if key not in CONFIG_KEYS[kind])
        if unknown:
            allowed = ", ".join(sorted(CONFIG_KEYS[kind]))
            raise InvalidField(
                unknown[0], f"is no setting of a {kind} target (settings: {allowed})"
            )
        config = _email_config(self.config) if kind == EMAIL else _http_config(kind, self.config)
        if not isinstance(self.is_default, bool):
            raise InvalidField("default", "must be true or false")
        rules = None if self.rules is None else validate_rule_list(self.rules, "rules")
        rate = self.rate_per_min
        if isinstance(rate, bool) or not isinstance(rate, int):
            raise InvalidField("rate_per_min", "must be a whole number")
        if not 1 <= rate <= MAX_RATE_PER_MIN:
            raise InvalidField("rate_per_min", f"must be 1 to {MAX_RATE_PER_MIN}")
        return replace(self, kind=kind, config=config, rules=rules)

    def public_config(self) -> dict[str, Any]:
        return public_config(self.kind, self.config)

    def secrets(self) -> list[str]:
        return secret_values(self.config)


def _http_config(kind: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {"url": _url(raw.get("url"))}
    if "secret" in raw and raw["secret"] not in (None, ""):
        config["secret"] = _secret("secret", raw["secret"])
    if kind == WEBHOOK and raw.get("headers"):
        config["headers"] = _headers(raw["headers"])
    return config


def _url(value: Any) -> str:
    if value is None or value == "":
        raise InvalidField("url", "required (http:// or https://)")
    if not isinstance(value, str) or len(value) > MAX_URL:
        raise InvalidField("url", f"must be text of at most {MAX_URL} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise InvalidField("url", "must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidField("url", "is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidField("url", "must be http:// or https:// with a host")
    del port
    return value


def _secret(field_name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidField(field_name, "must be non-empty text")
    if len(value) > MAX_SECRET or not value.isprintable():
        raise InvalidField(field_name, f"at most {MAX_SECRET} printable characters")
    return value


def _headers(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidField("headers", "must be a mapping of header name to value")
    if len(value) > MAX_HEADERS:
        raise InvalidField("headers", f"at most {MAX_HEADERS} headers")
    headers: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise InvalidField("headers", f"{str(name)[:64]!r} is not a header name")
        if name.lower() in RESERVED_HEADERS:
            raise InvalidField("headers", f"{name} is set by fss and cannot be replaced")
        if not isinstance(text, str) or len(text) > MAX_HEADER_VALUE:
            raise InvalidField("headers", f"the value of {name} must be text")
        if any(ch in "\r\n\0" or (not ch.isprintable() and ch != "\t") for ch in text):
            raise InvalidField("headers", f"the value of {name} has a line break or control")
        headers[name] = text.strip()
    return headers


def _email_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    host = raw.get("host")
    if not isinstance(host, str) or not HOST.match(host):
        raise InvalidField("host", "required: the SMTP server's host name or address")
    security = raw.get("security") or STARTTLS
    if security not in SECURITY_PORTS:
        raise InvalidField("security", f"must be one of {', '.join(SECURITY_PORTS)}")
    port = _port(raw.get("port"), SECURITY_PORTS[security])
    config: dict[str, Any] = {"host": host, "port": port, "security": security}
    user, password = raw.get("user"), raw.get("password")
    if user not in (None, "") or password not in (None, ""):
        if not isinstance(user, str) or not user or len(user) > 256 or not user.isprintable():
            raise InvalidField("user", "required with a password (printable text)")
        config["user"] = user
        config["password"] = _secret("password", password)
        if security == NO_TLS:
            raise InvalidField("password", "would go in the clear with security none")
    sender = raw.get("from")
    if not isinstance(sender, str) or "\n" in sender or "\r" in sender:
        raise InvalidField("from", "required: the sender's address")
    display, address = parseaddr(sender)
    if not ADDRESS.match(address):
        raise InvalidField("from", f"{sender!r} is not an email address")
    config["from"] = formataddr((display, address)) if display else address
    config["to"] = _recipients(raw.get("to"))
    return config


def _port(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise InvalidField("port", "must be a whole number from 1 to 65535")
    return value


def _recipients(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple) or not value:
        raise InvalidField("to", "required: one or more email addresses")
    if len(value) > MAX_RECIPIENTS:
        raise InvalidField("to", f"at most {MAX_RECIPIENTS} recipients")
    found: list[str] = []
    for address in value:
        if not isinstance(address, str) or not ADDRESS.match(address.strip()):
            raise InvalidField("to", f"{str(address)[:100]!r} is not an email address")
        if address.strip() not in found:
            found.append(address.strip())
    return found


# Settings that may name an environment variable instead of holding a secret in a file.
ENV_FIELDS = frozenset({"secret", "password", "url", "user"})
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(entry: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """`${VAR}` in the secret-bearing settings (secret, password, user, url, header values)
    replaced by the environment's value: secrets need not sit in files. A variable that is
    not set is an error naming the field (never an empty secret)."""

    def expand(field_name: str, value: Any) -> Any:
        if not isinstance(value, str):
            return value

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise InvalidField(field_name, f"environment variable {name} is not set")
            return env[name]

        return ENV_REFERENCE.sub(lookup, value)

    expanded = dict(entry)
    for key in ENV_FIELDS & set(expanded):
        expanded[key] = expand(key, expanded[key])
    headers = expanded.get("headers")
    if isinstance(headers, Mapping):
        expanded["headers"] = {k: expand("headers", v) for k, v in headers.items()}
    return expanded


def target_from_document(
    entry: Any, where: str = "", env: Mapping[str, str] | None = None
) -> TargetSpec:
    """A target from a file's or the API's entry: {name, kind, default, rules,
    rate_per_min, <settings>...}, `${VAR}` expanded from `env` when given (see expand_env).
    Validated; InvalidField naming `where` + the field."""
    prefix = f"{where}." if where else ""
    if not isinstance(entry, Mapping):
        raise InvalidField(where or "target", "must be a mapping (name, kind, settings)")
    try:
        settings = expand_env(entry, env) if env is not None else dict(entry)
    except InvalidField as exc:
        raise InvalidField(prefix + exc.field, exc.reason) from None
    name = settings.pop("name", None)
    kind = settings.pop("kind", None)
    is_default = settings.pop("default", True)
    rules = settings.pop("rules", None)
    rate = settings.pop("rate_per_min", DEFAULT_RATE_PER_MIN)
    try:
        if isinstance(rules, str):
            rules = [part.strip() for part in rules.split(",") if part.strip()]
        if rules is not None and not isinstance(rules, list | tuple):
            raise InvalidField("rules", "must be a list of rule names")
        return TargetSpec(
            name=name,
            kind=kind if isinstance(kind, str) else "",
            config=settings,
            is_default=is_default,
            rules=None if rules is None else frozenset(validate_rule_list(rules, "rules")),
            rate_per_min=rate,
        ).validated()
    except InvalidField as exc:
        raise InvalidField(prefix + exc.field, exc.reason) from None


# --- what may be shown ---------------------------------------------------------------------


def public_url(url: str) -> str:
    """scheme://host[:port], with "/***" for a path or query: the chat robots' tokens sit
    there (and user:password@ is dropped)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return MASK
    if ":" in host:
        host = f"[{host}]"
    shown = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        shown += "/" + MASK
    return shown


def public_config(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings with every secret masked: secrets and passwords, the URL's path and
    query, and the values of custom headers (they tend to be credentials)."""
    shown: dict[str, Any] = {}
    for key, value in config.items():
        if key in SECRET_KEYS:
            shown[key] = MASK
        elif key == "url" and isinstance(value, str):
            shown[key] = public_url(value)
        elif key == "headers" and isinstance(value, Mapping):
            shown[key] = {name: MASK for name in value}
        elif isinstance(value, list):
            shown[key] = list(value)
        else:
            shown[key] = value
    return shown


def secret_values(config: Mapping[str, Any]) -> list[str]:
    """Every string that must never appear in an error, an answer or a log line: the
    secrets, header values, and the URL with its path and query (and each part of those)."""
    found: list[str] = []
    for key in SECRET_KEYS:
        if isinstance(config.get(key), str):
            found.append(config[key])
    headers = config.get("headers")
    if isinstance(headers, Mapping):
        found.extend(v for v in headers.values() if isinstance(v, str))
    url = config.get("url")
    if isinstance(url, str):
        found.append(url)
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is not None:
            if parts.path not in ("", "/"):
                found.append(parts.path)
            for chunk in (parts.query, parts.fragment, parts.password, parts.username):
                if chunk:
                    found.append(chunk)
                    found.extend(p.partition("=")[2] for p in chunk.split("&"))
    # Longest first: a secret that contains another is scrubbed whole.
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
            encoded = quote_plus(secret)
            if encoded != secret:
                text = text.replace(encoded, MASK)
    return text


# --- what a receiver is sent ---------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """One POST to a receiver (the URL may carry a token: never show it, see public_url)."""

    url: str
    headers: dict[str, str]
    body: bytes


def http_request(spec: TargetSpec, message: Message, now: datetime) -> HttpRequest:
    """The POST that tells an HTTP target about `message`, signed at `now` when the target
    has a secret."""
    builders = {
        WEBHOOK: _webhook,
        SLACK: _slack,
        DINGTALK: _dingtalk,
        WECOM: _wecom,
        FEISHU: _feishu,
    }
    if spec.kind not in builders:
        raise ValueError(f"{spec.kind} is no HTTP target kind")
    return builders[spec.kind](spec.config, message, now)


JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-FSS-Signature header's value (see the module docstring)."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def _webhook(config: Mapping[str, Any], message: Message, now: datetime) -> HttpRequest:
    body = _json_bytes(message.to_json())
    headers = {**config.get("headers", {}), **JSON_HEADERS}
    headers["X-FSS-Idempotency-Key"] = message.idempotency_key
    if config.get("secret"):
        headers["X-FSS-Signature"] = webhook_signature(config["secret"], int(now.timestamp()), body)
    return HttpRequest(config["url"], headers, body)


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn treats <, > and & as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(config: Mapping[str, Any], message: Message, now: datetime) -> HttpRequest:
    lines = [f"*{_slack_escape(message.headline)}*"]
    if message.text:
        lines.append(_slack_escape(message.text))
    if message.url:
        lines.append(f"<{_slack_escape(message.url)}|open in fss>")
    text = _clip_chars("\n".join(lines), SLACK_MAX_CHARS)
    return HttpRequest(config["url"], dict(JSON_HEADERS), _json_bytes({"text": text}))


def _markdown(message: Message) -> str:
    """The chat robots' markdown: a heading, the text line by line, the console link."""
    lines = [f"### {message.headline}", ""]
    lines.extend(f"{line}  " for line in message.text.splitlines())
    if message.url:
        lines.extend(["", f"[open in fss]({message.url})"])
    return "\n".join(lines)


def _plain(message: Message) -> str:
    parts = [message.headline]
    if message.text:
        parts.append(message.text)
    if message.url:
        parts.append(message.url)
    return "\n".join(parts)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's robot signature, URL-encoded, for `&timestamp=<ms>&sign=<this>`."""
    digest = hmac.new(
        secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return quote_plus(base64.b64encode(digest).decode("ascii"))


def _dingtalk(config: Mapping[str, Any], message: Message, now: datetime) -> HttpRequest:
    body = {
        "msgtype": "markdown",
        "markdown": {
            "title": message.headline[:100],
            "text": _clip_bytes(_markdown(message), DINGTALK_MAX_BYTES),
        },
    }
    url = config["url"]
    if config.get("secret"):
        ms = int(now.timestamp() * 1000)
        joiner = "&" if urlsplit(url).query else "?"
        url = f"{url}{joiner}timestamp={ms}&sign={dingtalk_sign(config['secret'], ms)}"
    return HttpRequest(url, dict(JSON_HEADERS), _json_bytes(body))


def _wecom(config: Mapping[str, Any], message: Message, now: datetime) -> HttpRequest:
    body = {
        "msgtype": "markdown",
        "markdown": {"content": _clip_bytes(_markdown(message), WECOM_MAX_BYTES)},
    }
    return HttpRequest(config["url"], dict(JSON_HEADERS), _json_bytes(body))


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's (Lark's) custom bot signature: HMAC-SHA256 keyed with "<ts>\\n<secret>" over
    no bytes, base64."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _feishu(config: Mapping[str, Any], message: Message, now: datetime) -> HttpRequest:
    body: dict[str, Any] = {
        "msg_type": "text",
        "content": {"text": _clip_bytes(_plain(message), FEISHU_MAX_BYTES)},
    }
    if config.get("secret"):
        seconds = int(now.timestamp())
        body["timestamp"] = str(seconds)
        body["sign"] = feishu_sign(config["secret"], seconds)
    return HttpRequest(config["url"], dict(JSON_HEADERS), _json_bytes(body))


def _clip_chars(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip_bytes(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", errors="ignore") + "…"


def judge_answer(kind: str, status: int, body_text: str) -> tuple[bool, str]:
    """Whether the receiver took the message, and its answer (clipped) to record. Chat
    robots answer HTTP 200 to a refused message too: their JSON code tells."""
    answer = _clip_chars(body_text, MAX_ANSWER)
    if not 200 <= status < 300:
        return False, answer
    if kind in (DINGTALK, WECOM):
        return _json_field(body_text, ("errcode",)) == 0, answer
    if kind == FEISHU:
        return _json_field(body_text, ("code", "StatusCode")) == 0, answer
    return True, answer


def _json_field(text: str, names: tuple[str, ...]) -> Any:
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    for name in names:
        if name in document:
            value = document[name]
            return value if isinstance(value, int) and not isinstance(value, bool) else None
    return None


# --- email ---------------------------------------------------------------------------------


def message_id(idempotency_key: str, sender: str) -> str:
    """A Message-ID fixed by the idempotency key: every attempt of one delivery has the same
    one, so mail clients show a repeat as one message."""
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    domain = parseaddr(sender)[1].rpartition("@")[2] or "fss.invalid"
    return f"<{digest}.fss@{domain}>"


def email_message(spec: TargetSpec, message: Message) -> EmailMessage:
    config = spec.config
    mail = EmailMessage()
    mail["Subject"] = _one_line(message.headline)[:250]
    mail["From"] = config["from"]
    mail["To"] = ", ".join(config["to"])
    mail["Date"] = formatdate(message.at.timestamp(), usegmt=True)
    mail["Message-ID"] = message_id(message.idempotency_key, config["from"])
    mail["X-FSS-Idempotency-Key"] = _one_line(message.idempotency_key)[:200]
    mail.set_content(_plain(message) + "\n")
    mail.add_alternative(_email_html(message), subtype="html")
    return mail


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _email_html(message: Message) -> str:
    text = "<br>\n".join(html.escape(line) for line in message.text.splitlines())
    link = ""
    if message.url:
        href = html.escape(message.url, quote=True)
        link = f'<p><a href="{href}">open in fss</a></p>'
    return (
        "<!DOCTYPE html><html><body>"
        f"<h3>{html.escape(message.headline)}</h3>"
        f"<p>{text}</p>{link}"
        "</body></html>\n"
    )
