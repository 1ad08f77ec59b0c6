"""Flower-style monitoring: web pages, the JSON API under /api/v1, /metrics, /healthz."""

from fss.web.app import create_web_app
from fss.web.config import Role, WebSettings, WebUser

__all__ = ["Role", "WebSettings", "WebUser", "create_web_app"]
