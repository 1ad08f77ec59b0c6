"""Web settings read from the environment fail closed: an unknown on/off value is an error
naming the variable, never silently "off" (cookies without Secure behind TLS)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fss.errors import InvalidField
from fss.web.config import WebSettings

BASE = {"FSS_WEB_TOKEN": "t" * 32}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", False), ("1", True), ("true", True), ("On", True), ("yes", True), ("0", False),
     ("off", False), ("NO", False)],
)
def test_secure_cookies_reads_every_spelling_of_on_and_off(raw: str, expected: bool) -> None:
    settings = WebSettings.from_env({**BASE, "FSS_WEB_SECURE_COOKIES": raw})
    assert settings.secure_cookies is expected


@given(st.text(max_size=12).filter(
    lambda v: v.strip().lower() not in {"", "1", "true", "yes", "on", "0", "false", "no", "off"}
))
def test_an_unknown_secure_cookies_value_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(InvalidField) as refused:
        WebSettings.from_env({**BASE, "FSS_WEB_SECURE_COOKIES": raw})
    assert "FSS_WEB_SECURE_COOKIES" in str(refused.value)
