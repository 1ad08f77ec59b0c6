"""The login form and logout: a server-side session for browsers, throttled logins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from fss.web import database_down, i18n
from fss.web.auth import (
    SESSION_COOKIE,
    LoginThrottled,
    authenticator,
    client_address,
    refuse_cross_site,
)
from fss.web.templating import page_locale, render

router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    shown = {"next": safe_next(next), "error": ""}
    outage = database_down.probe(request)
    if outage is not None:
        return database_down.login_response(request, outage, shown)
    return render(request, "login.html", shown)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    refuse_cross_site(request)
    auth = authenticator(request)
    again = {"next": safe_next(next), "username": username}
    try:
        user = auth.log_in(username, password, client_address(request), "login form")
        session = auth.start_session(user, client_address(request)) if user else None
    except database_down.DATABASE_ERRORS as exc:
        return database_down.login_response(request, database_down.note(request, exc), again)
    except LoginThrottled as throttled:
        text = i18n.translate(page_locale(request), "Too many failed logins: try again in "
                              "{seconds} s.", seconds=throttled.retry_after_s)
        refused = render(request, "login.html", {**again, "error": text}, status_code=429)
        refused.headers["Retry-After"] = str(throttled.retry_after_s)
        return refused
    if user is None or session is None:
        return render(
            request, "login.html",
            {**again,
             "error": i18n.translate(page_locale(request), "Wrong user name or password.")},
            status_code=401,
        )
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session.cookie,
        max_age=auth.settings.session_max_age_s,
        httponly=True,
        samesite="lax",
        secure=auth.settings.secure_cookies,
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    refuse_cross_site(request)
    authenticator(request).end_session(
        request.cookies.get(SESSION_COOKIE, ""), client_address(request)
    )
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/lang")
def switch_language(
    to: Annotated[str, Query(max_length=20)] = "",
    next: Annotated[str, Query(max_length=2000)] = "/",
) -> Response:
    """The top bar's language switch: the choice sticks in a cookie (no sign-in needed, so the
    login form has it too); back to the page it was made on."""
    locale = i18n.normalize(to)
    response = RedirectResponse(safe_next(next), status_code=303)
    if locale is None:
        response.delete_cookie(i18n.COOKIE, path="/")  # back to the browser's languages
    else:
        response.set_cookie(i18n.COOKIE, locale, max_age=i18n.COOKIE_MAX_AGE_S,
                            samesite="lax", path="/")
    return response
