"""`fss alert target ...`: an admin adds, lists, tests, applies and removes alert targets;
secrets stay out of the output and can stay out of shell history and files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alerting.receivers import http_receiver, smtp_receiver
from cli_support import Fss, fss_json, sqlite_only
from click.testing import CliRunner

from fss.cli import cli, main

TOKEN = "T000/B000/tok9f8e7d"


def run_main(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    """`fss ARGS` through main(): its exit code, stdout and stderr."""
    capsys.readouterr()
    code = 0
    try:
        main([*args, "--database-url", url])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_given_targets_added_then_listed_with_secrets_masked(
    fss: Fss, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "sig-secret-1")
    fss(
        "alert",
        "target",
        "add",
        "ops",
        "--kind",
        "webhook",
        "--url",
        f"https://hooks.example/{TOKEN}",
        "--secret-env",
        "HOOK_SECRET",
        "--header",
        "Authorization: Bearer bearer-tok",
        "--rules",
        "run_failed,hung",
        "--rate-per-min",
        "7",
    )
    fss(
        "alert",
        "target",
        "add",
        "mail",
        "--kind",
        "email",
        "--host",
        "smtp.example.org",
        "--user",
        "fss",
        "--password",
        "mail-pw-1",
        "--from",
        "fss@example.org",
        "--to",
        "a@example.org,b@example.org",
        "--no-default",
    )

    listed = fss_json(fss, "alert", "target", "list")
    table = fss("alert", "target", "list").stdout

    assert [(t["name"], t["kind"], t["default"]) for t in listed] == [
        ("mail", "email", False),
        ("ops", "webhook", True),
    ]
    ops = listed[1]
    assert ops["rules"] == ["hung", "run_failed"] and ops["rate_per_min"] == 7
    assert ops["config"] == {
        "url": "https://hooks.example/***",
        "secret": "***",
        "headers": {"Authorization": "***"},
    }
    assert listed[0]["config"]["to"] == ["a@example.org", "b@example.org"]
    for secret in ("sig-secret-1", "bearer-tok", "mail-pw-1", "tok9f8e7d"):
        assert secret not in table and secret not in json.dumps(listed)
    assert table.splitlines()[0].split() == [
        "NAME",
        "KIND",
        "DEFAULT",
        "RULES",
        "RATE_PER_MIN",
        "CONFIG",
    ]


def test_given_a_live_receiver_when_tested_then_its_answer_is_printed(fss: Fss) -> None:
    with http_receiver((200, b'{"received":true}')) as receiver:
        fss("alert", "target", "add", "hook", "--kind", "webhook", "--url", receiver.url())
        out = fss("alert", "target", "test", "hook").stdout

    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["ok"] == "yes" and lines["status"] == "200"
    assert lines["answer"] == '{"received":true}'
    assert int(lines["duration_ms"]) >= 0
    (request,) = receiver.requests
    assert json.loads(request.body)["kind"] == "test"


@sqlite_only
def test_given_a_failing_receiver_when_tested_then_exit_one_with_its_answer(
    fss: Fss, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with http_receiver((500, b"upstream down")) as receiver:
        fss(
            "alert",
            "target",
            "add",
            "hook",
            "--kind",
            "slack",
            "--url",
            receiver.url(f"/services/{TOKEN}"),
        )
        code, out, _ = run_main(capsys, database_url, "alert", "target", "test", "hook", "--json")

    assert code == 1
    document = json.loads(out)
    assert (document["ok"], document["status"], document["answer"]) == (
        False,
        500,
        "upstream down",
    )
    assert "tok9f8e7d" not in out and "/***" in document["error"]


@sqlite_only
def test_given_an_smtp_server_when_an_email_target_is_tested_then_it_gets_the_mail(
    fss: Fss,
) -> None:
    with smtp_receiver() as server:
        fss(
            "alert",
            "target",
            "add",
            "mail",
            "--kind",
            "email",
            "--host",
            "127.0.0.1",
            "--port",
            str(server.port),
            "--security",
            "none",
            "--from",
            "fss@example.org",
            "--to",
            "ops@example.org",
        )
        out = fss("alert", "target", "test", "mail").stdout

    assert "queued as fss-test" in out
    ((envelope, mail),) = server.messages
    assert envelope.rcpt_tos == ["ops@example.org"]
    assert mail["Subject"] == "[fss TEST] test message to target mail"


@sqlite_only
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "slack", "--url", "ftp://x"], "error: url: must be http:// or https://"),
        (
            ["--kind", "slack", "--url", "https://h/x", "--secret", "s"],
            "error: secret: is no setting of a slack target",
        ),
        (
            ["--kind", "email", "--host", "h", "--from", "a@b", "--to", "nope"],
            "error: to: 'nope' is not an email address",
        ),
        (
            ["--kind", "webhook", "--url", "https://h/x", "--header", "NoColon"],
            "error: header: write it as 'Name: value'",
        ),
        (
            ["--kind", "webhook", "--url", "https://h/x", "--secret-env", "FSS_TEST_UNSET_VAR"],
            "error: secret-env: environment variable FSS_TEST_UNSET_VAR is not set",
        ),
        (
            ["--kind", "slack", "--url", "https://h/x", "--rules", "run_fail"],
            "error: rules: unknown rule 'run_fail'",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_field_and_exit_two(
    fss: Fss,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    code, _, err = run_main(capsys, database_url, "alert", "target", "add", "t", *args)

    assert code == 2
    assert err.startswith(message) and err.count("\n") == 1, err
    assert fss_json(fss, "alert", "target", "list") == []


@sqlite_only
def test_a_duplicate_name_exits_two_and_a_missing_one_exits_one(
    fss: Fss, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fss("alert", "target", "add", "t", "--kind", "slack", "--url", "https://h/x")

    duplicate = run_main(
        capsys,
        database_url,
        "alert",
        "target",
        "add",
        "t",
        "--kind",
        "wecom",
        "--url",
        "https://h/y",
    )
    missing = run_main(capsys, database_url, "alert", "target", "test", "nope")

    assert (
        duplicate[0] == 2
        and "error: name: an alert target named 't' already exists" in (duplicate[2])
    )
    assert missing[0] == 1 and missing[2] == "error: alert target 'nope' does not exist\n"


def test_apply_creates_and_overwrites_reading_secrets_from_the_environment(
    fss: Fss, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DING_SECRET", "SECding-1")
    monkeypatch.setenv("DING_TOKEN", "ding-tok-2")
    fss("alert", "target", "add", "ding", "--kind", "slack", "--url", "https://old/x")
    path = tmp_path / "targets.yaml"
    path.write_text(
        "alert_targets:\n"
        "  - name: ding\n"
        "    kind: dingtalk\n"
        "    url: https://oapi.dingtalk.com/robot/send?access_token=${DING_TOKEN}\n"
        "    secret: ${DING_SECRET}\n"
        "    rules: [run_failed]\n"
        "    default: false\n"
        "  - name: mail\n"
        "    kind: email\n"
        "    host: smtp.example.org\n"
        "    security: tls\n"
        "    from: fss@example.org\n"
        "    to: [a@example.org]\n",
        encoding="utf-8",
    )

    out = fss("alert", "target", "apply", str(path)).stdout

    assert out == "applied 2 alert targets\n"
    listed = {t["name"]: t for t in fss_json(fss, "alert", "target", "list")}
    assert listed["ding"]["kind"] == "dingtalk" and listed["ding"]["default"] is False
    assert listed["mail"]["config"]["port"] == 465
    assert "ding-tok-2" not in json.dumps(listed) and "SECding-1" not in json.dumps(listed)
    from fss.store.alert_targets import get_target
    from fss.store.engine import create_engine

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            stored = get_target(conn, "ding").spec.config
    finally:
        engine.dispose()
    assert stored["secret"] == "SECding-1"
    assert stored["url"].endswith("access_token=ding-tok-2")


@sqlite_only
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {
                "alert_targets": [
                    {"name": "a", "kind": "slack", "url": "https://h/x"},
                    {"name": "b", "kind": "slack", "url": "nope"},
                ]
            },
            "error: alert_targets[1].url: must be http:// or https:// with a host",
        ),
        (
            {
                "alert_targets": [
                    {
                        "name": "a",
                        "kind": "webhook",
                        "url": "https://h/x",
                        "secret": "${FSS_TEST_UNSET_VAR}",
                    }
                ]
            },
            "error: alert_targets[0].secret: environment variable FSS_TEST_UNSET_VAR is not set",
        ),
        (
            {
                "alert_targets": [
                    {"name": "a", "kind": "slack", "url": "https://h/x"},
                    {"name": "a", "kind": "slack", "url": "https://h/y"},
                ]
            },
            "error: alert_targets[1].name: 'a' is listed twice",
        ),
        ({"groups": []}, "error: alert_targets: missing"),
    ],
)
def test_apply_refuses_the_whole_file_naming_the_entry_and_field(
    fss: Fss,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    body: dict[str, object],
    message: str,
) -> None:
    path = tmp_path / "targets.json"
    path.write_text(json.dumps(body), encoding="utf-8")

    code, _, err = run_main(capsys, database_url, "alert", "target", "apply", str(path))

    assert code == 2 and err.startswith(message) and err.count("\n") == 1, err
    assert fss_json(fss, "alert", "target", "list") == []


@sqlite_only
def test_a_yaml_error_names_the_line_and_not_its_text(
    fss: Fss, database_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text("alert_targets:\n  - name: a\n    secret: 'unclosed-s3cret\n", encoding="utf-8")

    code, _, err = run_main(capsys, database_url, "alert", "target", "apply", str(path))

    assert code == 2 and "line" in err and "unclosed-s3cret" not in err


@sqlite_only
def test_remove_deletes_the_target(fss: Fss) -> None:
    fss("alert", "target", "add", "t", "--kind", "wecom", "--url", "https://h/x?key=k")

    assert fss("alert", "target", "remove", "t").stdout == "removed alert target t\n"
    assert fss_json(fss, "alert", "target", "list") == []


def test_the_help_names_every_target_command() -> None:
    out = CliRunner().invoke(cli, ["alert", "target", "--help"]).stdout
    for command in ("add", "apply", "list", "remove", "test"):
        assert f"  {command}" in out
