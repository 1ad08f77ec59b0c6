"""fss.domain.alert_targets: what a target may be, what is shown of it, what it is sent."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fss.domain.alert_targets import (
    TargetSpec,
    email_message,
    expand_env,
    http_request,
    judge_answer,
    public_url,
    redact,
    target_from_document,
)
from fss.domain.alerts import Message
from fss.errors import InvalidField

NOW = datetime(2031, 3, 14, 9, 26, 53, 250000, tzinfo=timezone.utc)
MESSAGE = Message(
    idempotency_key="notice-7-target-2",
    kind="resolved",
    rule="group_late",
    title="group 3 <late> & sad",
    text='line one\n<script>alert("x")</script>',
    at=NOW,
    url="https://console.example/groups/3",
)
EMAIL: dict[str, Any] = {
    "host": "smtp.example.org",
    "from": "fss@example.org",
    "to": ["a@example.org"],
}


def valid(kind: str, **config: Any) -> TargetSpec:
    return TargetSpec("t", kind, config).validated()


def refused(kind: str, field: str, name: str = "t", **config: Any) -> InvalidField:
    with pytest.raises(InvalidField) as info:
        TargetSpec(name, kind, config).validated()
    assert info.value.field == field, info.value
    return info.value


# ---- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "ü", "a/b"])
def test_a_bad_name_is_refused(name: str) -> None:
    refused("webhook", "name", name=name, url="https://h/x")


def test_an_unknown_kind_is_refused_and_lark_is_feishu() -> None:
    assert "kinds: webhook" in str(refused("teams", "kind", url="https://h/x"))
    assert valid("Lark", url="https://open.larksuite.com/x").kind == "feishu"


@pytest.mark.parametrize(
    "url", [None, "", "ftp://h/x", "https://", "http://h/a b", "javascript:alert(1)", "h/x"]
)
def test_http_kinds_need_an_http_url(url: str | None) -> None:
    refused("slack", "url", url=url)


def test_an_unknown_setting_is_refused_naming_it() -> None:
    assert "no setting of a slack target" in str(
        refused("slack", "secret", url="https://h/x", secret="s")
    )
    refused("webhook", "sceret", url="https://h/x", sceret="typo")
    refused("email", "url", url="https://h/x", **EMAIL)


def test_webhook_headers_are_checked() -> None:
    assert valid("webhook", url="https://h/x", headers={"X-A": " 1 "}).config["headers"] == {
        "X-A": "1"
    }
    refused("webhook", "headers", url="https://h/x", headers={"X-A": "1\r\nX-B: 2"})
    refused("webhook", "headers", url="https://h/x", headers={"Bad Name": "1"})
    refused("webhook", "headers", url="https://h/x", headers={"X-FSS-Signature": "forged"})
    refused("webhook", "headers", url="https://h/x", headers={"Content-Length": "1"})
    refused("webhook", "headers", url="https://h/x", headers=["X-A: 1"])


def test_email_defaults_port_by_security() -> None:
    assert valid("email", **EMAIL).config["port"] == 587
    assert valid("email", **EMAIL, security="tls").config["port"] == 465
    assert valid("email", **EMAIL, security="none").config["port"] == 25
    assert valid("email", **EMAIL, port="2525").config["port"] == 2525


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"host": ""}, "host"),
        ({"host": "a b"}, "host"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"port": True}, "port"),
        ({"security": "ssl"}, "security"),
        ({"to": []}, "to"),
        ({"to": ["not-an-address"]}, "to"),
        ({"to": ["a@b\r\nBcc: x@y"]}, "to"),
        ({"from": "nobody"}, "from"),
        ({"from": "a@b\nBcc: c@d"}, "from"),
        ({"password": "pw"}, "user"),
        ({"user": "u"}, "password"),
        ({"user": "u", "password": "pw", "security": "none"}, "password"),
    ],
)
def test_bad_email_settings_are_refused(changes: dict[str, Any], field: str) -> None:
    refused("email", field, **{**EMAIL, **changes})


def test_email_recipients_may_be_one_comma_separated_text() -> None:
    spec = valid("email", **{**EMAIL, "to": "a@x.org, b@y.org,a@x.org"})
    assert spec.config["to"] == ["a@x.org", "b@y.org"]


def test_rules_and_rate_are_checked() -> None:
    with pytest.raises(InvalidField, match=r"^rules: unknown rule 'run_fail'"):
        TargetSpec("t", "slack", {"url": "https://h/x"}, rules=frozenset({"run_fail"})).validated()
    for rate in (0, 10_001, True, "5"):
        with pytest.raises(InvalidField, match=r"^rate_per_min"):
            TargetSpec("t", "slack", {"url": "https://h/x"}, rate_per_min=rate).validated()  # type: ignore[arg-type]


def test_a_document_entry_names_its_place_in_errors() -> None:
    entry = {
        "name": "ops",
        "kind": "dingtalk",
        "url": "https://oapi.dingtalk.com/robot/send",
        "secret": "SECx",
        "default": False,
        "rules": "run_failed,hung",
        "rate_per_min": 5,
    }
    spec = target_from_document(entry, "alert_targets[0]")
    assert (spec.is_default, spec.rules, spec.rate_per_min) == (
        False,
        frozenset({"run_failed", "hung"}),
        5,
    )
    with pytest.raises(InvalidField, match=r"^alert_targets\[2\]\.url: "):
        target_from_document({**entry, "url": "nope"}, "alert_targets[2]")
    with pytest.raises(InvalidField, match=r"^alert_targets\[2\]\.default: "):
        target_from_document({**entry, "default": "yes"}, "alert_targets[2]")


def test_env_references_are_expanded_in_secret_fields_only() -> None:
    entry = {
        "name": "${NAME}",
        "url": "https://h/hooks/${TOKEN}",
        "secret": "${SECRET}",
        "headers": {"Authorization": "Bearer ${TOKEN}"},
    }
    env = {"TOKEN": "tk", "SECRET": "sc", "NAME": "n"}
    assert expand_env(entry, env) == {
        "name": "${NAME}",
        "url": "https://h/hooks/tk",
        "secret": "sc",
        "headers": {"Authorization": "Bearer tk"},
    }
    with pytest.raises(InvalidField, match=r"^secret: environment variable SECRET is not set"):
        expand_env(entry, {"TOKEN": "tk"})


# ---- what is shown -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/XXX", "https://hooks.slack.com/***"),
        ("https://oapi.dingtalk.com/robot/send?access_token=abc", "https://oapi.dingtalk.com/***"),
        ("http://user:pw@127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://[::1]:81/x", "http://[::1]:81/***"),
        ("https://example.org", "https://example.org"),
    ],
)
def test_public_url_keeps_only_scheme_host_and_port(url: str, shown: str) -> None:
    assert public_url(url) == shown


def test_public_config_masks_every_secret() -> None:
    webhook = valid("webhook", url="https://h/x?k=1", secret="s3", headers={"Authorization": "B"})
    assert webhook.public_config() == {
        "url": "https://h/***",
        "secret": "***",
        "headers": {"Authorization": "***"},
    }
    email = valid("email", **EMAIL, user="u", password="pw")
    assert email.public_config()["password"] == "***"
    assert email.public_config()["user"] == "u"


secrets = st.text(
    alphabet=st.characters(categories=("L", "N", "P", "S"), exclude_characters="&=?#/%"),
    min_size=10,
    max_size=60,
)


@given(secret=secrets, token=secrets)
def test_public_config_and_redacted_errors_never_show_a_secret(secret: str, token: str) -> None:
    spec = valid(
        "webhook",
        url=f"https://hooks.example/{token}?t={token}",
        secret=secret,
        headers={"X-Key": secret},
    )
    shown = json.dumps(spec.public_config(), ensure_ascii=False)
    error = redact(f"failed: {spec.config['url']} said {secret} and {token}", spec.secrets())
    for text in (shown, error):
        assert secret not in text and token not in text


# ---- what is sent --------------------------------------------------------------------------


def test_the_webhook_body_is_the_message_signed_stripe_style() -> None:
    request = http_request(valid("webhook", url="https://h/x", secret="k"), MESSAGE, NOW)
    assert json.loads(request.body) == MESSAGE.to_json()
    t = int(NOW.timestamp())
    mac = hmac.new(b"k", f"{t}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-FSS-Signature"] == f"t={t},v1={mac}"
    assert request.headers["X-FSS-Idempotency-Key"] == "notice-7-target-2"


def test_dingtalk_signs_in_the_url_with_milliseconds() -> None:
    spec = valid(
        "dingtalk", url="https://oapi.dingtalk.com/robot/send?access_token=a", secret="SECabc"
    )
    request = http_request(spec, MESSAGE, NOW)
    query = parse_qs(urlsplit(request.url).query)
    ms = 1931246813250
    assert query["timestamp"] == [str(ms)]
    expected = base64.b64encode(
        hmac.new(b"SECabc", f"{ms}\nSECabc".encode(), hashlib.sha256).digest()
    ).decode()
    assert query["sign"] == [expected]
    no_query = http_request(valid("dingtalk", url="https://h/send", secret="S"), MESSAGE, NOW)
    assert no_query.url.startswith("https://h/send?timestamp=")


def test_feishu_signs_in_the_body_with_seconds() -> None:
    body = json.loads(
        http_request(valid("feishu", url="https://h/x", secret="fs"), MESSAGE, NOW).body
    )
    key = f"{int(NOW.timestamp())}\nfs".encode()
    assert body["timestamp"] == str(int(NOW.timestamp()))
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert "sign" not in json.loads(
        http_request(valid("feishu", url="https://h/x"), MESSAGE, NOW).body
    )


def test_wecom_content_is_clipped_to_its_byte_limit() -> None:
    long = Message("k", "firing", "run_failed", "t", "界" * 5000, NOW)
    content = json.loads(http_request(valid("wecom", url="https://h/x"), long, NOW).body)
    assert len(content["markdown"]["content"].encode()) <= 4096


def test_slack_text_escapes_its_control_characters() -> None:
    text = json.loads(http_request(valid("slack", url="https://h/x"), MESSAGE, NOW).body)["text"]
    assert "&lt;late&gt; &amp; sad" in text and "<script>" not in text


@pytest.mark.parametrize(
    ("kind", "status", "body", "ok"),
    [
        ("webhook", 204, "", True),
        ("webhook", 500, "boom", False),
        ("slack", 200, "ok", True),
        ("slack", 404, "no_service", False),
        ("dingtalk", 200, '{"errcode":0,"errmsg":"ok"}', True),
        ("dingtalk", 200, '{"errcode":310000,"errmsg":"keywords not in content"}', False),
        ("dingtalk", 200, "not json", False),
        ("wecom", 200, '{"errcode":93000,"errmsg":"invalid webhook url"}', False),
        ("feishu", 200, '{"StatusCode":0,"code":0,"msg":"success"}', True),
        ("feishu", 200, '{"StatusCode":0}', True),
        ("feishu", 200, '{"code":19021,"msg":"sign match fail"}', False),
        ("feishu", 200, '{"code":false}', False),
    ],
)
def test_answers_are_judged_per_kind(kind: str, status: int, body: str, ok: bool) -> None:
    assert judge_answer(kind, status, body) == (ok, body)


def test_a_long_answer_is_clipped() -> None:
    assert len(judge_answer("webhook", 200, "x" * 5000)[1]) == 2000


def test_the_email_has_text_and_escaped_html_and_a_stable_message_id() -> None:
    spec = valid("email", **{**EMAIL, "from": "Ops <fss@example.org>", "to": "a@x.org,b@y.org"})
    mail = email_message(spec, MESSAGE)
    assert mail["Subject"] == MESSAGE.headline
    assert mail["From"] == "Ops <fss@example.org>"
    assert mail["To"] == "a@x.org, b@y.org"
    assert mail["X-FSS-Idempotency-Key"] == "notice-7-target-2"
    assert mail["Message-ID"] == email_message(spec, MESSAGE)["Message-ID"]
    html = mail.get_body(("html",))
    assert html is not None
    html_text = html.get_content()
    assert "&lt;script&gt;" in html_text and "<script>" not in html_text
    assert "group 3 &lt;late&gt; &amp; sad" in html_text
    plain = mail.get_body(("plain",))
    assert plain is not None and "<script>" in plain.get_content()
