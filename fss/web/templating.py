"""Jinja2 templates of the pages (autoescaped: captions, data and logs are untrusted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from fss.domain.status import SHOWN_NAMES

TEMPLATES_DIR = Path(__file__).parent / "templates"


def create_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.autoescape = True
    return templates


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    principal = getattr(request.state, "principal", None)
    return templates.TemplateResponse(
        request,
        name,
        {
            "principal": principal,
            "csrf_token": principal.csrf if principal else "",
            "status_names": SHOWN_NAMES,
            **context,
        },
        status_code=status_code,
    )
