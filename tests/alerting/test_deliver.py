"""fss.alerting.deliver against real receivers: a local HTTP server checking the signatures
each vendor documents (recomputed here, not with fss's helpers), receivers that refuse, hang
or redirect, and aiosmtpd over plain SMTP, STARTTLS + AUTH and TLS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, unquote_plus, urlsplit

import pytest
from alerting.receivers import (
    free_port,
    http_receiver,
    self_signed_cert,
    silent_receiver,
    smtp_receiver,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fss.alerting.deliver import deliver, send_test
from fss.domain.alert_targets import TargetSpec
from fss.domain.alerts import Message

NOW = datetime(2031, 3, 14, 9, 26, 53, tzinfo=timezone.utc)
SECRET = "whsec-9d3f1e77a0b2"
MESSAGE = Message(
    idempotency_key="notice-41-target-3",
    kind="firing",
    rule="run_failed",
    title="group 12 (nightly <backup>) failed",
    text="ValueError: disk & tape full\nattempt 3 of 3",
    at=NOW,
    alert_id=41,
    group={"id": 12, "key": "backup", "caption": "nightly <backup>", "job_name": "backup"},
    task_id=990,
    url="http://console.example/tasks/990",
)


def spec(kind: str, **config: object) -> TargetSpec:
    return TargetSpec("t1", kind, dict(config)).validated()


def within_a_minute(stamp: float) -> bool:
    return abs(stamp - time.time()) < 60


# ---- the generic webhook -------------------------------------------------------------------


def test_given_a_webhook_with_a_secret_then_the_body_is_the_message_and_the_signature_checks() -> (
    None
):
    with http_receiver((200, b"thanks")) as receiver:
        target = spec(
            "webhook", url=receiver.url("/hook?x=1"), secret=SECRET, headers={"X-Team": "ops"}
        )
        result = deliver(target, MESSAGE, timeout_s=5)

    assert (result.ok, result.status_code, result.answer, result.error) == (
        True,
        200,
        "thanks",
        None,
    )
    (request,) = receiver.requests
    assert request.path == "/hook?x=1"
    assert json.loads(request.body) == MESSAGE.to_json()
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.headers["X-FSS-Idempotency-Key"] == "notice-41-target-3"
    assert request.headers["X-Team"] == "ops"
    # Stripe-style: t=<seconds>,v1=hex(HMAC-SHA256(secret, "<t>." + body))
    fields = dict(part.split("=", 1) for part in request.headers["X-FSS-Signature"].split(","))
    expected = hmac.new(
        SECRET.encode(), fields["t"].encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert within_a_minute(int(fields["t"]))


def test_given_a_webhook_without_a_secret_then_no_signature_header() -> None:
    with http_receiver() as receiver:
        assert deliver(spec("webhook", url=receiver.url()), MESSAGE, 5).ok

    assert receiver.requests[0].headers["X-FSS-Signature"] is None


def test_given_a_receiver_answering_500_then_failed_with_its_status_and_answer() -> None:
    with http_receiver((500, b'{"error":"db down"}')) as receiver:
        result = deliver(spec("webhook", url=receiver.url("/hook/tok-123")), MESSAGE, 5)

    assert not result.ok
    assert result.status_code == 500
    assert result.answer == '{"error":"db down"}'
    assert result.error is not None and "HTTP 500" in result.error
    assert "tok-123" not in result.error and "/***" in result.error


def test_given_a_receiver_answering_500_then_200_then_the_retry_is_delivered() -> None:
    with http_receiver((500, b"busy"), (200, b"ok")) as receiver:
        target = spec("webhook", url=receiver.url())
        first, second = deliver(target, MESSAGE, 5), deliver(target, MESSAGE, 5)

    assert (first.ok, second.ok) == (False, True)
    keys = {r.headers["X-FSS-Idempotency-Key"] for r in receiver.requests}
    assert keys == {"notice-41-target-3"}  # the receiver can drop the repeat


def test_given_a_receiver_that_never_answers_then_failed_within_the_timeout() -> None:
    with silent_receiver() as url:
        started = time.monotonic()
        result = deliver(spec("webhook", url=url), MESSAGE, timeout_s=1.0)
        took = time.monotonic() - started

    assert not result.ok and result.status_code is None
    assert took < 2.0, took
    assert result.error is not None and "s3cr3t-token" not in result.error
    assert "timed out" in result.error or "no answer" in result.error


def test_given_nothing_listening_then_failed_with_one_line_and_no_token() -> None:
    url = f"http://127.0.0.1:{free_port()}/services/T000/B000/XXXXSECRET"
    result = deliver(spec("slack", url=url), MESSAGE, 2)

    assert not result.ok and result.error is not None
    assert "\n" not in result.error
    assert "XXXXSECRET" not in result.error and "T000" not in result.error
    assert "refused" in result.error.lower()


def test_given_a_redirect_then_it_is_not_followed_and_the_attempt_fails() -> None:
    with http_receiver((302, b"")) as receiver:
        result = deliver(spec("webhook", url=receiver.url()), MESSAGE, 5)

    assert not result.ok and result.status_code == 302
    assert [r.path for r in receiver.requests] == ["/hook"]


# ---- chat robots ---------------------------------------------------------------------------


def test_given_a_dingtalk_robot_with_a_secret_then_the_url_signature_checks() -> None:
    dingtalk_secret = "SECa1b2c3d4e5f6"
    with http_receiver((200, b'{"errcode":0,"errmsg":"ok"}')) as receiver:
        target = spec(
            "dingtalk", url=receiver.url("/robot/send?access_token=abc"), secret=dingtalk_secret
        )
        result = deliver(target, MESSAGE, 5)

    assert result.ok, result
    (request,) = receiver.requests
    query = parse_qs(urlsplit(request.path).query)
    assert query["access_token"] == ["abc"]
    timestamp = query["timestamp"][0]
    # DingTalk: base64(HMAC-SHA256(key=secret, msg="<ms>\n<secret>")), URL-encoded.
    digest = hmac.new(
        dingtalk_secret.encode(), f"{timestamp}\n{dingtalk_secret}".encode(), hashlib.sha256
    ).digest()
    raw_sign = unquote_plus(urlsplit(request.path).query.split("sign=")[1])
    assert raw_sign == base64.b64encode(digest).decode()
    assert within_a_minute(int(timestamp) / 1000)
    body = json.loads(request.body)
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == MESSAGE.headline
    assert "disk & tape full" in body["markdown"]["text"]


def test_given_a_dingtalk_robot_answering_an_errcode_then_failed_with_its_answer() -> None:
    answer = b'{"errcode":310000,"errmsg":"sign not match"}'
    with http_receiver((200, answer)) as receiver:
        result = deliver(
            spec("dingtalk", url=receiver.url("/robot/send?access_token=abc")), MESSAGE, 5
        )

    assert not result.ok and result.status_code == 200
    assert "sign not match" in result.answer


def test_given_a_feishu_robot_with_a_secret_then_the_body_signature_checks() -> None:
    feishu_secret = "fs-7xk2PqL9"
    ok = b'{"StatusCode":0,"StatusMessage":"success","code":0,"data":{},"msg":"success"}'
    with http_receiver((200, ok)) as receiver:
        result = deliver(
            spec("feishu", url=receiver.url("/open-apis/bot/v2/hook/uuid-1"), secret=feishu_secret),
            MESSAGE,
            5,
        )

    assert result.ok, result
    body = json.loads(receiver.requests[0].body)
    # Feishu: base64(HMAC-SHA256(key="<seconds>\n<secret>", msg=b"")).
    key = f"{body['timestamp']}\n{feishu_secret}".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert within_a_minute(int(body["timestamp"]))
    assert body["msg_type"] == "text"
    assert body["content"]["text"].startswith(MESSAGE.headline)


def test_given_a_feishu_robot_refusing_then_failed() -> None:
    refusal = b'{"code":19021,"data":{},"msg":"sign match fail"}'
    with http_receiver((200, refusal)) as receiver:
        result = deliver(spec("feishu", url=receiver.url(), secret="x" * 8), MESSAGE, 5)

    assert not result.ok and "sign match fail" in result.answer


def test_given_wecom_and_slack_robots_then_their_formats_arrive() -> None:
    with http_receiver((200, b'{"errcode":0,"errmsg":"ok"}')) as receiver:
        wecom = deliver(spec("wecom", url=receiver.url("/cgi-bin/webhook/send?key=k")), MESSAGE, 5)
    with http_receiver((200, b"ok")) as slack_receiver:
        slack = deliver(spec("slack", url=slack_receiver.url("/services/T/B/X")), MESSAGE, 5)

    assert wecom.ok and slack.ok
    content = json.loads(receiver.requests[0].body)["markdown"]["content"]
    assert content.startswith(f"### {MESSAGE.headline}")
    text = json.loads(slack_receiver.requests[0].body)["text"]
    assert "nightly &lt;backup&gt;" in text and "disk &amp; tape" in text
    assert "<http://console.example/tasks/990|open in fss>" in text


def test_send_test_sends_a_test_message() -> None:
    with http_receiver() as receiver:
        result = send_test(spec("webhook", url=receiver.url()), NOW, 5)

    assert result.ok
    body = json.loads(receiver.requests[0].body)
    assert (body["kind"], body["rule"]) == ("test", "test")
    assert body["title"] == "test message to target t1"


# ---- secrets never leak into what is recorded ----------------------------------------------

secrets_text = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="%&=?#/"),
    min_size=12,
    max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    secret=secrets_text,
    token=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=16, max_size=32),
)
def test_an_echoing_500_receiver_never_gets_a_secret_into_the_result(
    secret: str, token: str
) -> None:
    """The receiver echoes the request line, headers and body back; the recorded answer and
    error still show neither the signing secret, the header value nor the URL's token."""
    with http_receiver((500, b""), echo=True) as receiver:
        target = spec(
            "webhook",
            url=receiver.url(f"/hooks/{token}?key={token}"),
            secret=secret,
            headers={"Authorization": f"Bearer {secret}"},
        )
        result = deliver(target, MESSAGE, 5)

    assert not result.ok and "POST" in result.answer
    for shown in (result.answer, result.error or "", json.dumps(target.public_config())):
        assert secret not in shown
        assert token not in shown


# ---- email ---------------------------------------------------------------------------------


def email_spec(port: int, **config: object) -> TargetSpec:
    return spec(
        "email",
        host="127.0.0.1",
        port=port,
        **{"from": "FSS Alerts <fss@example.org>", "to": ["a@example.org", "b@example.org"]},
        **config,
    )


def test_given_plain_smtp_then_one_message_with_text_and_escaped_html() -> None:
    with smtp_receiver() as server:
        result = deliver(email_spec(server.port, security="none"), MESSAGE, 5)

    assert result.ok, result
    assert result.status_code == 250 and "queued as fss-test" in result.answer
    ((envelope, mail),) = server.messages
    assert envelope.mail_from == "fss@example.org"
    assert envelope.rcpt_tos == ["a@example.org", "b@example.org"]
    assert mail["Subject"] == MESSAGE.headline
    assert mail["X-FSS-Idempotency-Key"] == "notice-41-target-3"
    assert mail["Message-ID"].endswith("@example.org>")
    plain = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert plain is not None and html is not None
    assert "disk & tape full" in plain.get_content()
    html_text = html.get_content()
    assert "nightly &lt;backup&gt;" in html_text and "disk &amp; tape" in html_text
    assert "<backup>" not in html_text


def test_the_same_idempotency_key_gives_the_same_message_id() -> None:
    with smtp_receiver() as server:
        target = email_spec(server.port, security="none")
        deliver(target, MESSAGE, 5)
        deliver(target, MESSAGE, 5)

    assert len({mail["Message-ID"] for _, mail in server.messages}) == 1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    made: tuple[Path, Path] = self_signed_cert(tmp_path_factory.mktemp("tls"))
    return made


def test_given_starttls_and_a_login_then_delivered_over_tls_with_the_password(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client trusts the test's own CA through OpenSSL's SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    with smtp_receiver(cert=certificate, users={"fss": "pw-Zq81!x"}) as server:
        result = deliver(
            email_spec(server.port, security="starttls", user="fss", password="pw-Zq81!x"),
            MESSAGE,
            5,
        )

    assert result.ok, result
    assert server.logins == [("fss", "pw-Zq81!x")]
    assert len(server.messages) == 1


def test_given_a_wrong_password_then_failed_without_the_password(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    with smtp_receiver(cert=certificate, users={"fss": "right-one"}) as server:
        result = deliver(
            email_spec(server.port, security="starttls", user="fss", password="wrong-Pw-77"),
            MESSAGE,
            5,
        )

    assert not result.ok and result.error is not None
    assert "535" in result.error and "wrong-Pw-77" not in result.error
    assert server.messages == []


def test_given_an_untrusted_certificate_then_failed(certificate: tuple[Path, Path]) -> None:
    with smtp_receiver(cert=certificate) as server:
        result = deliver(email_spec(server.port, security="starttls"), MESSAGE, 5)

    assert not result.ok and result.error is not None
    assert "certificate" in result.error.lower()
    assert server.messages == []


def test_given_implicit_tls_then_delivered(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    with smtp_receiver(cert=certificate, implicit_tls=True) as server:
        result = deliver(email_spec(server.port, security="tls"), MESSAGE, 5)

    assert result.ok, result
    assert len(server.messages) == 1


def test_given_an_smtp_server_that_never_answers_then_failed_within_the_timeout() -> None:
    with silent_receiver() as url:
        port = urlsplit(url).port
        assert port is not None
        started = time.monotonic()
        result = deliver(email_spec(port, security="none"), MESSAGE, timeout_s=1.0)

    assert not result.ok and time.monotonic() - started < 2.0
