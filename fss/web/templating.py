"""Jinja2 templates of the pages (autoescaped: captions, data and logs are untrusted).

Every page is rendered in the request's language (fss.web.i18n): ``_("text", name=value)``
translates in the template, ``lang`` is the locale for ``<html lang>`` and JS Intl, and
``i18n_json`` carries the strings the page's scripts use (FSS.t in static/fss.js).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from fss.domain.status import SHOWN_NAMES
from fss.web import i18n
from fss.web.i18n.errors import ERROR_TEXTS

TEMPLATES_DIR = Path(__file__).parent / "templates"


def create_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.autoescape = True
    return templates


def page_locale(request: Request) -> str:
    cached = getattr(request.state, "locale", None)
    if cached is None:
        cached = i18n.request_locale(request.cookies, request.headers.get("accept-language"))
        request.state.locale = cached
    return str(cached)


def i18n_json(locale: str, template: str) -> dict[str, Any]:
    """What FSS.t reads: the page's script strings and the API error texts, translated.
    English pages get neither: they show the source texts and the API's own `error` lines."""
    strings = i18n.catalog(locale)
    return {
        "locale": locale,
        "strings": i18n.script_strings(locale, i18n.template_scripts(template)),
        "errors": {code: strings.get(text, text) for code, text in ERROR_TEXTS.items()}
        if strings else {},
        **i18n.said_json(locale),
    }


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    principal = getattr(request.state, "principal", None)
    locale = page_locale(request)
    translator = i18n.Translator(locale)
    return templates.TemplateResponse(
        request,
        name,
        {
            "principal": principal,
            "csrf_token": principal.csrf if principal else "",
            "status_names": {k: translator.plain(v) for k, v in SHOWN_NAMES.items()},
            "_": translator,
            "lang": locale,
            "locales": i18n.LOCALE_NAMES,
            "i18n": i18n_json(locale, name),
            **context,
        },
        status_code=status_code,
    )
