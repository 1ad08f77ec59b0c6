"""A gRPC client's finish with data: the bridge sends what the job changed in the order's
data (data_patch), so the recorder keeps a change made to the group meanwhile."""

from __future__ import annotations

from datetime import datetime, timezone

from fss.bridge.proto.fss.v1 import fss_pb2
from fss.bridge.session import finished_event
from fss.orders import RunOrder

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=timezone.utc)


def _order(data: dict[str, object]) -> RunOrder:
    return RunOrder(7, 1, 3, "j", "node-1", T0, data)


def test_changed_data_comes_with_what_changed() -> None:
    report = fss_pb2.Finished(task_id=7, attempt=1, success=True,
                              data_json='{"n": 2, "keep": "x", "new": [1]}')
    event = finished_event(report, _order({"n": 1, "keep": "x", "gone": 0}), "node-1", T0, 5)
    assert event.data == {"n": 2, "keep": "x", "new": [1]}
    assert event.data_patch == {"set": [[["n"], 2], [["new"], [1]]], "unset": [["gone"]]}


def test_no_data_no_patch() -> None:
    report = fss_pb2.Finished(task_id=7, attempt=1, success=True)
    event = finished_event(report, _order({"n": 1}), "node-1", T0, 5)
    assert event.data is None and event.data_patch is None
