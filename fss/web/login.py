"""The login form and logout: a server-side session for browsers, throttled logins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from fss.web.auth import (
    SESSION_COOKIE,
    LoginThrottled,
    authenticator,
    client_address,
    refuse_cross_site,
)
from fss.web.templating import render

router = APIRouter(include_in_schema=False)


def safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", {"next": safe_next(next), "error": ""})


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
    except LoginThrottled as throttled:
        refused = render(
            request, "login.html", {**again, "error": f"Too many failed logins: try again in "
                                    f"{throttled.retry_after_s} s."}, status_code=429,
        )
        refused.headers["Retry-After"] = str(throttled.retry_after_s)
        return refused
    if user is None:
        return render(
            request, "login.html", {**again, "error": "Wrong user name or password."},
            status_code=401,
        )
    session = auth.start_session(user, client_address(request))
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
