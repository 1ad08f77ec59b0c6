"""`fss group apply / diff / export`: schedules kept as code, through click's CliRunner.

The done-when of issue 10 item 1 runs on SQLite, PostgreSQL and MySQL: 50 groups in a YAML
file, applied twice (no changes the second time), one edited, exactly that change in diff.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cli_support import Fss, fss_json, sqlite_only
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from fss.cli import cli, main
from fss.domain.clock import parse_time
from fss.domain.group_file import parse_group_file, render_group_file
from fss.domain.schedule import Schedule, initial_run_at
from fss.domain.status import TaskStatus
from fss.store.tables import task, task_group


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run(url: str, *args: str, stdin: str | None = None) -> Outcome:
    """`fss ARGS --database-url URL` through fss.cli.main (its exit codes), whatever they are."""
    with CliRunner().isolation(input=stdin) as (out, err, _):
        try:
            main([*args, "--database-url", url])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return Outcome(code, out.getvalue().decode(), err.getvalue().decode())


def fifty_groups() -> str:
    lines = ["groups:"]
    for i in range(50):
        lines += [
            f"  - key: team/job-{i:02}",
            f"    caption: Job {i}",
            f"    job_name: jobs.j{i % 5}",
        ]
        if i % 3 == 0:
            lines += [f'    cron: "{i} 3 * * *"', "    time_zone: Europe/Berlin"]
        elif i % 3 == 1:
            lines += [f"    interval_ms: {(i + 1) * 1000}", f"    data: {{n: {i}, tag: t{i}}}"]
        else:
            lines += ["    job_sets_next: true", "    enabled: false", "    timeout_s: 90"]
    return "\n".join(lines) + "\n"


def rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        # Without `applied`: applying an export records it as the new base of the three-way
        # merge (the group's settings stay as they are).
        query = sa.select(*(c for c in task_group.c if c.name != "applied")).order_by("id")
        groups = [dict(r._mapping) for r in conn.execute(query)]
        tasks = [dict(r._mapping) for r in conn.execute(sa.select(task).order_by("id"))]
    return groups + tasks


def test_done_when_fifty_groups_applied_twice_then_one_edit_shows_in_diff(
    fss: Fss, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    groups_file = tmp_path / "groups.yaml"
    groups_file.write_text(fifty_groups())

    first = fss("group", "apply", "-f", str(groups_file))
    assert first.stdout.splitlines()[-1] == "50 created, 0 updated, 0 deleted, 0 unchanged"
    assert len(fss_json(fss, "group", "list")) == 50
    written = rows(engine)

    second = fss("group", "apply", "-f", str(groups_file))
    assert second.stdout == "0 created, 0 updated, 0 deleted, 50 unchanged\n"
    assert rows(engine) == written
    in_sync = run(database_url, "group", "diff", "-f", str(groups_file))
    assert (in_sync.exit_code, in_sync.stdout, in_sync.stderr) == (0, "", "")

    groups_file.write_text(fifty_groups().replace('cron: "9 3 * * *"', 'cron: "9 4 * * *"'))
    edited = run(database_url, "group", "diff", "-f", str(groups_file))

    assert edited.exit_code == 1, edited.output
    assert edited.stdout == '~ update team/job-09\n    cron: "9 3 * * *" -> "9 4 * * *"\n'
    assert rows(engine) == written  # diff writes nothing


def test_export_then_apply_and_diff_change_nothing(
    fss: Fss, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    source = tmp_path / "source.json"
    source.write_text(
        json.dumps(
            {
                "groups": [
                    {
                        "key": "ünï/1",
                        "caption": "Bericht ✓",
                        "job_name": "reports.nightly",
                        "cron": "0 30 2 * * *",
                        "time_zone": "America/New_York",
                        "data": {"to": ["a@example.com"], "deep": {"x": 1.5, "ok": True}},
                        "timeout_s": 900,
                        "misfire": "skip",
                    },
                    {
                        "key": "off",
                        "caption": "Off",
                        "job_name": "j",
                        "interval_ms": 5000,
                        "enabled": False,
                        "start_at": "2030-01-01T00:00:00Z",
                    },
                    {"key": "paced", "caption": "Paced", "job_name": "j", "job_sets_next": True},
                ]
            }
        )
    )
    fss("group", "apply", "-f", str(source))
    fss("group", "add", "--caption", "by hand", "--job-name", "j", "--interval-ms", "1000")
    fss("group", "edit", "1", "--start-at", "2031-05-06T07:08:09.123456+02:00")
    fss("group", "disable", "3")
    written = rows(engine)

    for name in ("export.yaml", "export.json"):
        exported = tmp_path / name
        out = run(database_url, "group", "export", "-o", str(exported))
        assert out.exit_code == 0 and out.stdout == f"exported 3 groups to {exported}\n"
        assert "1 group without a key" in out.stderr
        diff = run(database_url, "group", "diff", "--prune", "-f", str(exported))
        assert (diff.exit_code, diff.stdout) == (0, ""), diff.output
        applied = fss("group", "apply", "--prune", "-f", str(exported))
        assert applied.stdout == "0 created, 0 updated, 0 deleted, 3 unchanged\n"
        assert rows(engine) == written

    assert json.loads((tmp_path / "export.json").read_text())["groups"][1] == {
        "key": "off",
        "caption": "Off",
        "job_name": "j",
        "interval_ms": 5000,
        "enabled": False,
        "start_at": "2030-01-01T00:00:00+00:00",
    }
    assert "start_at: '2031-05-06T05:08:09.123456+00:00'" in (
        tmp_path / "export.yaml"
    ).read_text()


def test_an_invalid_file_lists_every_error_and_writes_nothing(
    fss: Fss, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    bad = tmp_path / "groups.yaml"
    bad.write_text(
        "groups:\n"
        "  - key: fine\n    caption: Fine\n    job_name: j\n    interval_ms: 1000\n"
        "  - key: broken\n    caption: Broken\n    job_name: j\n    interval_ms: -1\n"
        "    time_zone: Nowhere/Land\n"
    )
    written = rows(engine)

    for command in ("apply", "diff"):
        result = run(database_url, "group", command, "-f", str(bad))
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            f"{bad}:9: groups[1].interval_ms: must be > 0, got -1",
            f"{bad}:10: groups[1].time_zone: unknown time zone 'Nowhere/Land'",
            f"error: {bad}: 2 errors" + ("; nothing was written" if command == "apply" else ""),
        ]
    assert rows(engine) == written



def test_an_on_success_cycle_is_an_error_for_diff_and_dry_run_as_for_apply(
    fss: Fss, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    # diff said "+ create" three times (exit 1) and apply --dry-run "3 created" (exit 0);
    # only apply said the file closed a cycle.
    cycle = tmp_path / "groups.yaml"
    cycle.write_text("groups:\n" + "".join(
        f"  - key: {key}\n    caption: {key}\n    job_name: j\n    interval_ms: 60000\n"
        f"    on_success: [{then}]\n"
        for key, then in (("a", "b"), ("b", "c"), ("c", "a"))
    ))
    written = rows(engine)

    for args in (["apply"], ["apply", "--dry-run"], ["diff"]):
        result = run(database_url, "group", *args, "-f", str(cycle))
        assert result.exit_code == 2, (args, result.output)
        assert result.stdout == "", args
        assert result.stderr == "error: on_success: cycle a -> b -> c -> a\n", args
    assert rows(engine) == written


@sqlite_only
def test_prune_deletes_keyed_groups_missing_from_the_file_but_never_unkeyed_ones(
    fss: Fss, database_url: str, tmp_path: Path
) -> None:
    both = tmp_path / "both.yaml"
    both.write_text(
        "groups:\n"
        "  - {key: a, caption: A, job_name: j, interval_ms: 1000}\n"
        "  - {key: b, caption: B, job_name: j, interval_ms: 1000}\n"
    )
    only_a = tmp_path / "a.yaml"
    only_a.write_text("groups:\n  - {key: a, caption: A, job_name: j, interval_ms: 1000}\n")
    fss("group", "add", "--caption", "by hand", "--job-name", "j", "--interval-ms", "1000")
    fss("group", "apply", "-f", str(both))

    kept = fss("group", "apply", "-f", str(only_a))
    preview = run(database_url, "group", "diff", "--prune", "-f", str(only_a))
    dry = fss("group", "apply", "--prune", "--dry-run", "-f", str(only_a))
    assert [g["key"] for g in fss_json(fss, "group", "list")] == [None, "a", "b"]
    pruned = fss("group", "apply", "--prune", "-f", str(only_a))

    assert kept.stdout == "0 created, 0 updated, 0 deleted, 1 unchanged\n"
    assert (preview.exit_code, preview.stdout) == (1, "- delete b\n")
    assert dry.stdout == "- delete b\ndry run, nothing written: 0 created, 0 updated, " \
        "1 deleted, 1 unchanged\n"
    assert pruned.stdout == "- delete b\n0 created, 0 updated, 1 deleted, 1 unchanged\n"
    assert [g["key"] for g in fss_json(fss, "group", "list")] == [None, "a"]


@sqlite_only
def test_apply_reads_stdin_and_group_show_has_the_key(fss: Fss, database_url: str) -> None:
    text = '{"groups": [{"key": "k", "caption": "C", "job_name": "j", "interval_ms": 10}]}'
    result = run(database_url, "group", "apply", "-f", "-", stdin=text)

    assert result.exit_code == 0, result.output
    assert result.stdout == "+ create k\n1 created, 0 updated, 0 deleted, 0 unchanged\n"
    assert fss_json(fss, "group", "show", "1")["key"] == "k"


@sqlite_only
def test_export_key_prefix_and_format(fss: Fss, tmp_path: Path) -> None:
    text = "".join(
        f"  - {{key: {k}, caption: C, job_name: j, interval_ms: 10}}\n" for k in ("x/1", "y/1")
    )
    (tmp_path / "g.yaml").write_text("groups:\n" + text)
    fss("group", "apply", "-f", str(tmp_path / "g.yaml"))

    as_json = json.loads(fss("group", "export", "--key-prefix", "x/", "--format", "json").stdout)
    as_yaml = fss("group", "export", "--key-prefix", "y/").stdout

    assert [g["key"] for g in as_json["groups"]] == ["x/1"]
    assert as_yaml == "groups:\n- key: y/1\n  caption: C\n  job_name: j\n  interval_ms: 10\n"


def test_diff_exits_2_when_the_database_is_not_usable(tmp_path: Path) -> None:
    groups_file = tmp_path / "g.yaml"
    groups_file.write_text("groups: []\n")
    empty_db = tmp_path / "empty.db"
    empty_db.write_bytes(b"")

    result = run(f"sqlite:///{empty_db}", "group", "diff", "-f", str(groups_file))

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: database: no such table: task_group")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_missing_file_is_one_line_and_exit_2(fss: Fss, database_url: str) -> None:
    result = run(database_url, "group", "apply", "-f", "/nonexistent/groups.yaml")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: file: cannot read '/nonexistent/groups.yaml' (No such file or directory)\n"
    )


def test_help_lists_the_commands() -> None:
    out = CliRunner().invoke(cli, ["group", "--help"]).stdout
    for command in ("apply", "diff", "export"):
        assert f"  {command} " in out


def test_a_group_made_by_hand_is_adopted_by_a_file_through_its_key(
    fss: Fss, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    fss("group", "add", "--caption", "by hand", "--job-name", "j", "--interval-ms", "1000")
    fss("group", "add", "--caption", "born keyed", "--job-name", "j", "--interval-ms", "500",
        "--key", "team/b")
    groups_file = tmp_path / "g.yaml"
    groups_file.write_text(
        "groups:\n"
        "  - {key: team/a, caption: by hand, job_name: j, interval_ms: 2000}\n"
        "  - {key: team/b, caption: born keyed, job_name: j, interval_ms: 500}\n"
    )

    fss("group", "edit", "1", "--key", "team/a")
    preview = run(database_url, "group", "diff", "-f", str(groups_file))
    applied = fss("group", "apply", "-f", str(groups_file))

    assert (preview.exit_code, preview.stdout) == (
        1, "~ update team/a\n    interval_ms: 1000 -> 2000\n"
    )
    assert applied.stdout.endswith("0 created, 1 updated, 0 deleted, 1 unchanged\n")
    listed = fss_json(fss, "group", "list")
    assert [(g["id"], g["key"], g["interval_ms"]) for g in listed] == [
        (1, "team/a", 2000), (2, "team/b", 500)
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["group", "add", "--caption", "x", "--job-name", "j", "--interval-ms", "9",
          "--key", "team/a"], "error: key: 'team/a' is already the key of group 1"),
        (["group", "edit", "2", "--key", "team/a"],
         "error: key: 'team/a' is already the key of group 1"),
        (["group", "edit", "2", "--key", ""], "error: key: must be 1 to 128"),
        (["group", "edit", "2", "--key", "a\tb"], "error: key: must be 1 to 128"),
    ],
)
def test_a_key_already_taken_or_malformed_is_one_line_and_writes_nothing(
    fss: Fss, database_url: str, engine: Engine, args: list[str], message: str
) -> None:
    fss("group", "add", "--caption", "a", "--job-name", "j", "--interval-ms", "9",
        "--key", "team/a")
    fss("group", "add", "--caption", "b", "--job-name", "j", "--interval-ms", "9")
    before = rows(engine)

    outcome = run(database_url, *args)

    assert outcome.exit_code == 2, outcome.output
    assert outcome.stderr.startswith(message), outcome.stderr
    assert rows(engine) == before


# --- thousands of groups: every row and every first task as `fss group add` would write it ---


def varied_document(count: int) -> dict[str, Any]:
    """`count` groups of every kind: interval, cron in zones, job-set, disabled, past and
    future starts, data with text COPY must escape (tabs, backslashes, newlines)."""
    zones = ("UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York")
    groups: list[dict[str, Any]] = []
    for i in range(count):
        entry: dict[str, Any] = {
            "key": f"team-{i % 7}/g\\{i:05}",
            "caption": f"Group {i} ✓ \\ tab",
            "job_name": f"jobs.j{i % 9}",
            "data": {"n": i, "text": "a\tb\\c\nd", "list": [i, None, True]} if i % 2 else {},
        }
        kind = i % 5
        if kind == 0:
            entry["interval_ms"] = 1000 * (i % 13 + 1)
        elif kind == 1:
            entry.update(cron=f"{i % 60} {i % 24} * * *", time_zone=zones[i % 4])
        elif kind == 2:
            entry.update(job_sets_next=True, timeout_s=60 + i, misfire="skip")
        elif kind == 3:
            entry.update(interval_ms=60_000, enabled=False)
        else:
            entry.update(cron="*/7 * * * * *", start_at=f"20{20 + i % 20}-03-04T05:06:07Z")
        groups.append(entry)
    return {"groups": groups}


def expected_group(entry: dict[str, Any], created_at: datetime) -> dict[str, Any]:
    """The row `fss group add` writes for the entry at `created_at` (its `now`)."""
    start_at = parse_time("start_at", entry["start_at"]) if "start_at" in entry else created_at
    enabled = entry.get("enabled", True)
    schedule = Schedule(entry.get("interval_ms"), entry.get("cron"), entry.get("time_zone"))
    return {
        "key": entry["key"],
        "caption": entry["caption"],
        "job_name": entry["job_name"],
        "data": json.dumps(entry["data"], ensure_ascii=False, separators=(",", ":")),
        "interval_ms": entry.get("interval_ms"),
        "cron": entry.get("cron"),
        "time_zone": entry.get("time_zone"),
        "timeout_s": entry.get("timeout_s"),
        "misfire": entry.get("misfire", "run-once"),
        "is_enable": enabled,
        "start_at": start_at,
        "next_at": initial_run_at(schedule, start_at, created_at) if enabled else start_at,
        "activate_at": created_at,
        "last_run_at": None,
        "run_count": 0,
        "run_speed_avg": 0,
    }


@pytest.mark.parametrize("file_format", ["yaml", "json"])
def test_thousands_of_groups_are_written_as_group_add_writes_each(
    fss: Fss, engine: Engine, tmp_path: Path, file_format: str
) -> None:
    document = varied_document(3000)
    groups_file = tmp_path / f"groups.{file_format}"
    entries = parse_group_file(json.dumps(document), "groups.json")
    groups_file.write_text(render_group_file(entries, file_format))

    applied = fss("group", "apply", "-f", str(groups_file))

    assert applied.stdout.splitlines()[-1] == "3000 created, 0 updated, 0 deleted, 0 unchanged"
    with engine.connect() as conn:
        # Without `applied`: applying an export records it as the new base of the three-way
        # merge (the group's settings stay as they are).
        query = sa.select(*(c for c in task_group.c if c.name != "applied")).order_by("id")
        groups = [dict(r._mapping) for r in conn.execute(query)]
        tasks = {r.task_group_id: dict(r._mapping) for r in conn.execute(sa.select(task))}
    assert [g["key"] for g in groups] == [e["key"] for e in document["groups"]]  # file order
    created_at = groups[0]["created_at"]
    for entry, group in zip(document["groups"], groups, strict=True):
        assert {k: group[k] for k in expected_group(entry, created_at)} == expected_group(
            entry, created_at
        ), entry["key"]
        assert group["created_at"] == created_at
        waiting = tasks.pop(group["id"], None)
        if not group["is_enable"]:
            assert waiting is None and group["task_id"] is None
            continue
        assert waiting is not None and group["task_id"] == waiting["id"]
        assert {k: waiting[k] for k in ("job_name", "start_at", "status", "open_group_id")} == {
            "job_name": group["job_name"],
            "start_at": group["next_at"],
            "status": TaskStatus.NONE,
            "open_group_id": group["id"],
        }
        assert (waiting["attempt"], waiting["claimed_by"], waiting["create_at"]) == (
            0,
            None,
            created_at,
        )
    assert tasks == {}  # no task without its group

    again = fss("group", "apply", "-f", str(groups_file))
    assert again.stdout == "0 created, 0 updated, 0 deleted, 3000 unchanged\n"
