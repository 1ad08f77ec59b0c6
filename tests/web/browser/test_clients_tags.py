"""The Clients page shows each client's tags (`fss worker --tag`) and the runs its last
heartbeat reported (Active), in a real browser against a real `fss dev`."""

from __future__ import annotations

from datetime import datetime, timezone

from conftest import LiveFss
from playwright.sync_api import Page, expect

from fss.events import ClientHeartbeat
from fss.store.recording import upsert_client


def test_the_clients_page_shows_tags_and_active_runs(viewer_page: Page, live_fss: LiveFss) -> None:
    now = datetime.now(timezone.utc)
    beat = ClientHeartbeat("w-gpu-tagged", "gpu-host", "10.0.0.9", 77, ("render",),
                           "fss.client.w-gpu-tagged", now, active=2, tags=("big", "gpu"))
    with live_fss.engine.begin() as conn:
        upsert_client(conn, beat, now)

    viewer_page.goto(f"{live_fss.url}/clients")
    row = viewer_page.locator("#clients tbody tr", has_text="w-gpu-tagged")
    expect(row).to_have_count(1)
    shown = viewer_page.locator("#clients thead th").all_text_contents()
    headers = [h.strip().lower() for h in shown]
    cells = row.locator("td")
    tags = cells.nth(headers.index("tags"))
    expect(tags.locator(".chip")).to_have_text(["big", "gpu"])
    expect(cells.nth(headers.index("active"))).to_have_text("2")
    # The dev worker has no tags: a dash, not an empty cell.
    dev_row = viewer_page.locator("#clients tbody tr", has_text="dev-worker")
    expect(dev_row.locator("td").nth(headers.index("tags"))).to_have_text("—")
