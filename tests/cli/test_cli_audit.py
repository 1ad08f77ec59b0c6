"""`fss audit list` and what the CLI's changes record: the OS user and host, each field
before -> after, a groups file's apply one entry per group, and the filters."""

from __future__ import annotations

import getpass
import socket
from pathlib import Path

import pytest
from cli_support import Fss, fss_json, sqlite_only

from fss.cli import main


def test_cli_changes_are_recorded_with_the_os_user_and_host(fss: Fss) -> None:
    group_id = fss("group", "add", "--caption", "nightly", "--job-name", "demo.job",
                   "--interval-ms", "60000", "--data", '{"region": "eu"}').stdout.strip()
    fss("group", "edit", group_id, "--caption", "nightly v2", "--data", '{"region": "us"}')
    fss("group", "disable", group_id, "--note", "maintenance")
    fss("group", "enable", group_id)
    fss("group", "run", group_id)
    fss("dead-letters", "purge", "--yes")
    fss("group", "delete", group_id)

    entries = fss_json(fss, "audit", "list")
    assert [e["action"] for e in entries] == [
        "group.delete", "dead_letters.purge", "group.run", "group.enable", "group.disable",
        "group.edit", "group.create",
    ]
    assert {(e["actor"], e["actor_kind"], e["source"]) for e in entries} == {
        (getpass.getuser(), "cli", socket.gethostname())}
    edit = entries[5]
    assert edit["group_id"] == int(group_id)
    assert edit["changes"] == {"caption": ["nightly", "nightly v2"],
                               "data": [{"region": "eu"}, {"region": "us"}]}
    assert entries[1]["detail"] == {"deleted": 0}


def test_the_table_says_who_what_and_before_after_and_filters_narrow_it(fss: Fss) -> None:
    first = fss("group", "add", "--caption", "a", "--job-name", "j", "--interval-ms", "1000")
    fss("group", "add", "--caption", "b", "--job-name", "j", "--interval-ms", "1000")
    fss("group", "edit", first.stdout.strip(), "--timeout-s", "30")

    table = fss("audit", "list", "--group", first.stdout.strip()).stdout
    lines = table.splitlines()
    assert lines[0].split() == ["ID", "AT", "WHO", "FROM", "ACTION", "GROUP", "WHAT"]
    assert len(lines) == 3
    assert "group.edit" in lines[1] and "timeout_s: - -> 30" in lines[1]
    assert "group.create" in lines[2] and "caption: - -> a" in lines[2]
    assert len(fss_json(fss, "audit", "list", "--action", "group.create")) == 2
    assert len(fss_json(fss, "audit", "list", "--user", "nobody-else")) == 0
    assert len(fss_json(fss, "audit", "list", "--since", "1h")) == 3
    assert len(fss_json(fss, "audit", "list", "--since", "2999-01-01T00:00:00Z")) == 0
    newest = fss_json(fss, "audit", "list", "--limit", "1")
    older = fss_json(fss, "audit", "list", "--before-id", str(newest[0]["id"]))
    assert len(newest) == 1 and len(older) == 2 and older[0]["id"] < newest[0]["id"]


def test_a_groups_file_apply_records_each_group_it_changed(fss: Fss, tmp_path: Path) -> None:
    path = tmp_path / "groups.yaml"
    path.write_text("groups:\n"
                    "  - {key: a, caption: A, job_name: j, interval_ms: 1000}\n"
                    "  - {key: b, caption: B, job_name: j, interval_ms: 1000}\n")
    fss("group", "apply", "--file", str(path))
    path.write_text("groups:\n"
                    "  - {key: a, caption: A2, job_name: j, interval_ms: 1000}\n"
                    "  - {key: b, caption: B, job_name: j, interval_ms: 1000}\n")
    fss("group", "apply", "--file", str(path))

    entries = fss_json(fss, "audit", "list", "--action", "group.apply")
    assert [(e["subject"], e["detail"]) for e in entries] == [
        ("a", {"op": "update", "file": "groups.yaml"}),
        ("b", {"op": "create", "file": "groups.yaml"}),
        ("a", {"op": "create", "file": "groups.yaml"}),
    ]
    assert entries[0]["changes"] == {"caption": ["A", "A2"]}
    assert [e["action"] for e in fss_json(fss, "audit", "list", "--group", "a")] == [
        "group.apply", "group.apply"]


@sqlite_only
@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--since", "last tuesday"], "since"),
        (["--action", "group.explode"], "action"),
    ],
)
def test_bad_filters_are_one_line_naming_the_field(
    fss: Fss, database_url: str, args: list[str], field: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["audit", "list", *args, "--database-url", database_url])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {field}:") and len(err.strip().splitlines()) == 1
