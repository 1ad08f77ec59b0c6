"""What the operator's walk-through of issue 19 found in the API behind the console
(notes: walkthrough-19.md), checked on each web backend.

* The groups CSV said a schedule only in words ("at 02:30 every day, Asia/Shanghai"): the
  cron and the interval were not in the export, so it could not say what the console's
  table says beside the words, nor rebuild a group.
"""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient
from web_helpers import T0, WebDatabase, add_group


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
