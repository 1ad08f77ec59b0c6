"""What the operator's walk-through of issue 19 found in the API behind the console
(notes: walkthrough-19.md), checked on each web backend.

* The groups CSV said a schedule only in words ("at 02:30 every day, Asia/Shanghai"): the
  cron and the interval were not in the export, so it could not say what the console's
  table says beside the words, nor rebuild a group.
* A cron with a bad field came back as `cron_field` with its reason in English ("'61' is not
  0-59"), and a bad day-of-month or day-of-week field (a name with '-') as `invalid_field`
  with the whole English line: each reason has its code and parameters now.
* The overview's "Clients online: 1" stood beside a banner saying no live client serves any
  job: the one client was kicked. The overview says how many online clients take no runs.
"""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient
from web_helpers import CLIENT, T0, WebDatabase, add_group, register_client


def test_the_groups_csv_has_the_cron_and_the_interval_beside_the_words(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    nightly = add_group(web_db.engine, T0, "nightly", cron="0 30 2 * * *", interval_ms=None,
                        time_zone="Asia/Shanghai")
    often = add_group(web_db.engine, T0, "often", interval_ms=2000)
    response = admin_client.get("/api/v1/export/groups.csv")
    assert response.status_code == 200, response.text
    rows = list(csv.reader(io.StringIO(response.text)))
    header = rows[0]
    by_id = {int(row[0]): dict(zip(header, row, strict=True)) for row in rows[1:]}
    assert by_id[nightly]["schedule"] == "at 02:30 every day, Asia/Shanghai"
    assert by_id[nightly]["cron"] == "0 30 2 * * *"
    assert by_id[nightly]["interval_ms"] == ""
    assert by_id[often]["schedule"] == "every 2 s"
    assert by_id[often]["interval_ms"] == "2000"
    assert by_id[often]["cron"] == ""
    assert header.index("cron") == header.index("schedule") + 1


@pytest.mark.parametrize(("cron", "code", "params"), [
    ("61 * * * *", "cron_value", {"part": "minute", "value": "'61'", "span": "0-59"}),
    ("0 0 32 * *", "cron_value", {"part": "day-of-month", "value": "'32'", "span": "1-31"}),
    ("0 0 * 13 *", "cron_value_names",
     {"part": "month", "value": "'13'", "span": "1-12", "names": "JAN-DEC"}),
    ("0 0 * * FOO", "cron_value_names",
     {"part": "day-of-week", "value": "'FOO'", "span": "0-7", "names": "SUN-SAT"}),
    ("*/0 * * * *", "cron_step", {"part": "minute", "value": "'0'"}),
    ("*/99 * * * *", "cron_step_range", {"part": "minute", "value": "99", "span": "0-59"}),
    ("0 0 * * MON#7", "cron_nth", {"part": "day-of-week", "value": "'MON#7'"}),
])
def test_a_bad_cron_field_comes_back_as_a_code_with_its_parameters(
    admin_client: TestClient, web_db: WebDatabase, cron: str, code: str, params: dict[str, str]
) -> None:
    response = admin_client.post("/api/v1/groups", json={
        "caption": "bad cron", "job_name": "demo.job", "cron": cron})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == code, body
    assert body["params"] == {"field": "cron", "expression": cron, **params}
    assert cron in body["error"]  # the English line for scripts stays


def test_the_overview_says_how_many_online_clients_take_no_runs(
    admin_client: TestClient, web_db: WebDatabase
) -> None:
    register_client(web_db.engine, T0)
    register_client(web_db.engine, T0, "worker-2", pid=200)
    before = admin_client.get("/api/v1/overview").json()
    assert (before["clients_online"], before["clients_not_taking_runs"]) == (2, 0)
    assert admin_client.post(f"/api/v1/clients/{CLIENT}/kick").status_code == 200
    after = admin_client.get("/api/v1/overview").json()
    assert (after["clients_online"], after["clients_not_taking_runs"]) == (2, 1)
