"""Errors are not outages: what goes through the outage log, what is an ERROR, and a missing
package reported as one line naming the module and the package."""

from __future__ import annotations

import importlib
import logging
import socket
import sys
from pathlib import Path

import kombu.exceptions
import kombu.transport
import pytest
import redis
import sqlalchemy as sa

from fss.celery_app import check_broker_transport
from fss.errors import InvalidField
from fss.outage import ErrorLog, LoopErrors, describe_import_error, is_connection_error

LOGGER = logging.getLogger("tests.outage")


def refused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def raised_by(action: object) -> BaseException:
    try:
        action()  # type: ignore[operator]
    except Exception as exc:
        return exc
    raise AssertionError("nothing was raised")


def test_connection_errors_of_every_library_are_outages(tmp_path: Path) -> None:
    client = redis.Redis(port=refused_port(), socket_connect_timeout=1)
    engine = sa.create_engine(f"sqlite:///{tmp_path}/missing-dir/fss.db")
    try:
        redis_error = raised_by(client.ping)
        sql_error = raised_by(lambda: engine.connect().close())
    finally:
        client.close()
        engine.dispose()
    assert isinstance(redis_error, redis.exceptions.ConnectionError)
    assert isinstance(sql_error, sa.exc.OperationalError)
    for error in (
        redis_error,
        sql_error,
        ConnectionRefusedError("refused"),
        TimeoutError("timed out"),
        kombu.exceptions.OperationalError("no broker"),
    ):
        assert is_connection_error(error), error


def test_bugs_bad_data_and_missing_packages_are_not_outages() -> None:
    wrapped = RuntimeError("while sending")
    wrapped.__cause__ = ConnectionResetError("reset")
    assert is_connection_error(wrapped)  # raised from a connection error: still one
    for error in (
        KeyError("x"),
        ValueError("bad"),
        OverflowError("date value out of range"),
        ModuleNotFoundError("No module named 'packaging'", name="packaging"),
        sa.exc.IntegrityError("INSERT", {}, Exception("duplicate")),
    ):
        assert not is_connection_error(error), error


def test_the_same_error_is_logged_once_per_window_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    errors = ErrorLog(LOGGER, "claim loop", repeat_s=60, monotonic=lambda: now[0])
    caplog.set_level(logging.ERROR, LOGGER.name)
    for _ in range(5):
        errors.failed(KeyError("group 7"))
        now[0] += 10
    errors.failed(ValueError("another bug"))  # a different error is not held back
    now[0] += 20  # 70 s after the first report
    errors.failed(KeyError("group 7"))
    records = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage().split(";")[0] for r in records] == [
        "claim loop failed: KeyError: 'group 7'",
        "claim loop failed: ValueError: another bug",
        "claim loop failed: KeyError: 'group 7' (and 4 more times since)",
    ]
    assert all(r.exc_info is not None for r in records)


def test_a_loop_sends_outages_to_the_outage_log_and_the_rest_to_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = LoopErrors(LOGGER, "supervisor", "database")
    caplog.set_level(logging.DEBUG, LOGGER.name)
    assert loop.failed(ConnectionRefusedError("refused"), "supervision waits")
    assert not loop.failed(KeyError("x"), "supervision goes on")
    levels = [(r.levelno, r.getMessage().split(" (")[0]) for r in caplog.records]
    assert levels == [
        (logging.WARNING, "database"),
        (logging.ERROR, "supervisor failed: KeyError: 'x'; supervision goes on"),
    ]


def test_an_import_error_names_the_module_and_the_missing_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fss_needs_a_package.py").write_text("import fss_no_such_package_42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    error = raised_by(lambda: importlib.import_module("fss_needs_a_package"))
    assert isinstance(error, ImportError)
    line = describe_import_error(error)
    assert "\n" not in line
    assert "fss_needs_a_package" in line and "'fss_no_such_package_42'" in line
    assert "unreachable" not in line


def test_a_broker_transport_that_cannot_be_imported_stops_the_start_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check_broker_transport(f"redis://127.0.0.1:{refused_port()}/0")  # imports; connects nowhere
    # A fresh install without `packaging`: kombu's Redis transport cannot be imported.
    monkeypatch.setattr(kombu.transport, "_transport_cache", {})
    monkeypatch.delitem(sys.modules, "kombu.transport.redis")
    for name in [n for n in sys.modules if n.split(".")[0] == "packaging"] + ["packaging"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(InvalidField) as raised:
        check_broker_transport("redis://127.0.0.1:6379/0")
    message = str(raised.value)
    assert message.startswith("broker_url: module kombu.transport.redis cannot be imported")
    assert "'packaging'" in message and "\n" not in message
