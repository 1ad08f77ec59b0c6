"""The console's languages: English (the source text) and Simplified Chinese (zh-CN).

A catalog per language (zh_CN.json: English source text -> Chinese, glossary in README.md)
is read once. Templates call ``_("text", name=value)``; page scripts call ``FSS.t("text",
{name: value})`` and get the strings they use in a JSON element the template renders (only
those of the scripts the page loads: see ``script_strings``). ``{name}`` in a text is filled
from the parameters after translation, so a word order may differ per language.

The language: the ``fss_lang`` cookie the top bar's switch sets, else the best of the browser's
Accept-Language (zh, zh-CN, zh-Hans, zh-SG -> zh-CN; anything else English).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from contextlib import suppress
from contextvars import ContextVar
from functools import cache
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape
from starlette.types import ASGIApp, Receive, Scope, Send

HERE = Path(__file__).parent
STATIC_DIR = HERE.parent / "static"
TEMPLATES_DIR = HERE.parent / "templates"

ENGLISH = "en"
CHINESE = "zh-CN"
LOCALES = (ENGLISH, CHINESE)
LOCALE_NAMES = {ENGLISH: "English", CHINESE: "中文"}
COOKIE = "fss_lang"
COOKIE_MAX_AGE_S = 400 * 86400
CATALOG_FILES = {CHINESE: "zh_CN.json"}
# Accept-Language tags read as Simplified Chinese (lower case); zh-TW / zh-HK (Traditional)
# are not: they get English, as any other language.
CHINESE_TAGS = frozenset({"zh", "zh-cn", "zh-hans", "zh-sg", "zh-hans-cn", "zh-hans-sg"})

_PARAM = re.compile(r"\{(\w+)\}")
# A call of t("...") / FSS.t("...") / tn("...", "...") in a page script: the strings a page
# needs. Only double-quoted literals are marked (the extraction test holds scripts to it).
_JS_CALL = re.compile(r"""\bt(?:n)?\(\s*"((?:[^"\\]|\\.)*)"(?:\s*,\s*"((?:[^"\\]|\\.)*)")?""")
_SCRIPT_SRC = re.compile(r'<script src="/static/([\w.-]+\.js)"')


@cache
def catalog(locale: str) -> Mapping[str, str]:
    """English source text -> the locale's text; empty for English."""
    name = CATALOG_FILES.get(locale)
    if name is None:
        return {}
    data = json.loads((HERE / name).read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("@")}


def normalize(value: str | None) -> str | None:
    """A supported locale from a cookie or a query value ("zh-CN", "en"), else None."""
    if not value:
        return None
    lowered = value.strip().lower().replace("_", "-")
    if lowered in CHINESE_TAGS:
        return CHINESE
    if lowered == "en" or lowered.startswith("en-"):
        return ENGLISH
    return None


def from_accept_language(header: str | None) -> str:
    """The best supported language of an Accept-Language header; English when none is."""
    choices: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, raw = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    quality = float(raw)
                except ValueError:
                    quality = 0.0
        locale = normalize(tag)
        if locale is not None and quality > 0:
            choices.append((-quality, index, locale))
    return min(choices)[2] if choices else ENGLISH


def request_locale(cookies: Mapping[str, str], accept_language: str | None) -> str:
    return normalize(cookies.get(COOKIE)) or from_accept_language(accept_language)


def fill(text: str, params: Mapping[str, Any]) -> str:
    return _PARAM.sub(lambda m: str(params[m[1]]) if m[1] in params else m[0], text)


def translate(locale: str, source: str, /, **params: Any) -> str:
    """Plain text (for JSON, headers, log-free messages): the locale's text, filled."""
    return fill(catalog(locale).get(source, source), params)


class Translator:
    """``_`` of the templates: autoescaped Markup; a parameter that is Markup stays HTML."""

    def __init__(self, locale: str) -> None:
        self.locale = locale
        self.strings = catalog(locale)

    def __call__(self, source: str, /, **params: Any) -> Markup:
        shown = escape(self.strings.get(source, source))
        if not params:
            return Markup(shown)
        return Markup(_PARAM.sub(
            lambda m: str(escape(params[m[1]])) if m[1] in params else m[0], str(shown)))

    def plain(self, source: str, /, **params: Any) -> str:
        return translate(self.locale, source, **params)


# ---- the strings of page scripts ----------------------------------------------------------


def js_messages(source: str) -> list[str]:
    """The strings a script marks with t("...") / tn("one", "other")."""
    found: list[str] = []
    for match in _JS_CALL.finditer(source):
        for group in match.groups():
            if group is not None:
                found.append(json.loads(f'"{group}"'))
    return found


@cache
def script_messages(script: str) -> tuple[str, ...]:
    path = STATIC_DIR / script
    if not path.is_file():
        return ()
    return tuple(dict.fromkeys(js_messages(path.read_text(encoding="utf-8"))))


@cache
def template_scripts(template: str) -> tuple[str, ...]:
    """The page scripts a template loads (its <script src="/static/x.js">), fss.js first."""
    path = TEMPLATES_DIR / template
    found = _SCRIPT_SRC.findall(path.read_text(encoding="utf-8")) if path.is_file() else []
    return tuple(dict.fromkeys(["fss.js", *found]))


def script_strings(locale: str, scripts: Iterable[str]) -> dict[str, str]:
    """The translations the given scripts need (empty for English: the source is shown)."""
    strings = catalog(locale)
    if not strings:
        return {}
    wanted: dict[str, str] = {}
    for script in scripts:
        for text in script_messages(script):
            if text in strings:
                wanted[text] = strings[text]
    return wanted


# Texts the server translates with translate() (the login form's refusals); the extraction
# test holds them to the catalog as it does the templates' and scripts'.
SERVER_TEXTS = (
    "Too many failed logins: try again in {seconds} s.",
    "Wrong user name or password.",
)


# ---- what fss wrote, and health problems, in the page's language ---------------------------


def said_json(locale: str) -> dict[str, Any]:
    """What FSS.said and FSS.problemText read: the sentences fss writes into the store
    (fss.web.i18n.sentences) and the texts of health problems by code, translated; nothing
    for English (the stored text and the API's `detail` are shown)."""
    strings = catalog(locale)
    if not strings:
        return {}
    from fss.store.health import PROBLEM_TEXTS
    from fss.web.i18n.sentences import said_table

    return {"said": said_table(locale),
            "problems": {code: strings.get(text, text) for code, text in PROBLEM_TEXTS.items()}}


def problem_text(locale: str, code: str, params: Mapping[str, Any]) -> str:
    """A health problem (or a reason a group cannot run) in the locale, as FSS.problemText
    shows it: its code's text, each param a nested problem or a said() text."""
    from fss.store.health import PROBLEM_TEXTS
    from fss.web.i18n.sentences import said

    def value(item: Any) -> str:
        if isinstance(item, Mapping) and "code" in item:
            return problem_text(locale, item["code"], item.get("params") or {})
        return said(locale, str(item))

    source = PROBLEM_TEXTS[code]
    text = catalog(locale).get(source, source)
    return _PARAM.sub(lambda m: value(params[m[1]]) if m[1] in params else m[0], text)


# ---- the request's language where no request is at hand (API bodies) ---------------------

_REQUEST_LOCALE: ContextVar[str] = ContextVar("fss_request_locale", default=ENGLISH)


class LocaleContext:
    """ASGI middleware: the request's language (cookie, Accept-Language) for the handlers
    that fill texts in words into API bodies (``localized``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        cookies = SimpleCookie()
        with suppress(CookieError):
            cookies.load(headers.get("cookie", ""))
        chosen = {COOKIE: cookies[COOKIE].value} if COOKIE in cookies else {}
        token = _REQUEST_LOCALE.set(request_locale(chosen, headers.get("accept-language")))
        try:
            await self.app(scope, receive, send)
        finally:
            _REQUEST_LOCALE.reset(token)


def localized(body: dict[str, Any]) -> dict[str, Any]:
    """A group's JSON with ``schedule_text`` in the request's language: the API speaks
    English to scripts (no Accept-Language) and the console's language to the console."""
    if _REQUEST_LOCALE.get() == CHINESE and "schedule_text" in body:
        from fss.domain.schedule import Schedule
        from fss.web.i18n.schedule_zh import schedule_words_zh

        body["schedule_text"] = schedule_words_zh(Schedule(
            interval_ms=body.get("interval_ms"), cron=body.get("cron"),
            time_zone=body.get("time_zone")))
    return body
