"""No log line shows a URL password: the masker over generated URLs and text, the filter on
a record with arguments and an exception, and a real `fss scheduler` whose broker URL holds a
password (a Redis ACL user on the test server; RabbitMQ's guest for the fencing warning)."""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from runtime_python import runtime_python

from fss.cli.logs import make_handler
from fss.logsafe import MASK, mask_urls

SCHEMES = ["redis", "rediss", "amqp", "postgresql+psycopg2", "mysql+pymysql"]
USERS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", max_size=12)
# Passwords as people write them into URLs: percent-encoded, or raw with the characters a
# URL parser tolerates there (an unencoded "@" included).
RAW_PASSWORD = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!$%&'()*+,;=~-._@:",
    min_size=1, max_size=24,
)
ANY_PASSWORD = st.text(min_size=1, max_size=24).map(lambda p: quote(p, safe=""))
HOSTS = st.sampled_from(["127.0.0.1", "broker", "db.example.com", "[::1]"])
PORTS = st.one_of(st.none(), st.integers(1, 65535))
PATHS = st.sampled_from(["", "/", "/0", "//", "/fss?charset=utf8mb4", "/vhost"])


@st.composite
def secret_urls(draw: st.DrawFn) -> tuple[str, str, str]:
    """(url, its password, the url as masked)."""
    scheme = draw(st.sampled_from(SCHEMES))
    user = draw(USERS)
    password = draw(st.one_of(RAW_PASSWORD, ANY_PASSWORD))
    port = draw(PORTS)
    tail = draw(HOSTS) + (f":{port}" if port else "") + draw(PATHS)
    return (f"{scheme}://{user}:{password}@{tail}", password,
            f"{scheme}://{user}:{MASK}@{tail}")


PLAIN_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80
).filter(lambda t: "://" not in t)


@given(secret_urls(), PLAIN_TEXT, PLAIN_TEXT)
def test_every_url_password_is_masked_and_the_rest_of_the_line_kept(
    url: tuple[str, str, str], before: str, after: str
) -> None:
    raw, _password, masked = url
    line = f"{before} {raw} {after}"
    assert mask_urls(line) == f"{before} {masked} {after}"


@given(st.lists(secret_urls(), min_size=1, max_size=4), st.sampled_from([" ", ", ", " | "]))
def test_several_urls_in_one_line_leak_no_password(
    urls: list[tuple[str, str, str]], separator: str
) -> None:
    line = "broker " + separator.join(raw for raw, _, _ in urls) + " end"
    masked = mask_urls(line)
    assert masked == "broker " + separator.join(m for _, _, m in urls) + " end"


@given(PLAIN_TEXT)
def test_text_without_urls_is_unchanged(text: str) -> None:
    assert mask_urls(text) == text


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0", "redis://user@host:6379/1", "http://host:8080/a@b",
    "memory://", "sqlite:////tmp/fss.db", "unix:///run/redis.sock?db=2",
])
def test_urls_without_a_password_are_unchanged(url: str) -> None:
    assert mask_urls(f"broker {url}.") == f"broker {url}."


def _render(log_format: str, *args: object, exc: BaseException | None = None) -> str:
    stream = io.StringIO()
    handler = make_handler(log_format)
    handler.setStream(stream)  # type: ignore[attr-defined]
    logger = logging.getLogger(f"fss.test.logsafe.{secrets.token_hex(4)}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        if exc is None:
            logger.warning("broker %s, fence %s", *args)
        else:
            try:
                raise exc
            except type(exc):
                logger.exception("send failed for %s", *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_handlers_of_fss_processes_mask_arguments_and_exception_text(log_format: str) -> None:
    line = _render(log_format, "amqp://guest:guest@rabbit//", "redis://:R3disPW@h:6379/0")
    assert "R3disPW" not in line and "guest@" not in line
    assert "amqp://guest:***@rabbit//" in line and "redis://:***@h:6379/0" in line

    error = ConnectionError("Error connecting to redis://app:S3cr3t@10.0.0.5:6379/0")
    line = _render(log_format, "rediss://app:S3cr3t@10.0.0.5/1", exc=error)
    assert "S3cr3t" not in line
    assert "rediss://app:***@10.0.0.5/1" in line
    assert "ConnectionError: Error connecting to redis://app:***@10.0.0.5:6379/0" in (
        json.loads(line)["exc"] if log_format == "json" else line
    )


# --- a real `fss scheduler` ------------------------------------------------------------------

FSS = [runtime_python(), "-c", "from fss.cli import main; main()"]
PASSWORD = "R3disPW-" + secrets.token_hex(4)


@pytest.fixture
def redis_user_url(fresh_redis_url: Callable[[], str]) -> Iterator[str]:
    """The test Redis db, logged in as a user with a password (removed afterwards)."""
    url = fresh_redis_url()
    name = f"fss-test-logsafe-{secrets.token_hex(4)}"
    admin = redis.Redis.from_url(url)
    admin.acl_setuser(name, enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"],
                      channels=["*"], categories=["+@all"])
    yield url.replace("redis://", f"redis://{name}:{PASSWORD}@", 1)
    admin.acl_deluser(name)
    admin.close()


def _start_line_of_scheduler(tmp_path: Path, broker_url: str, until: str) -> str:
    database = f"sqlite:///{tmp_path / 'fss.db'}"
    env = {**os.environ, "FSS_DATABASE_URL": database, "FSS_BROKER_URL": broker_url,
           "PYTHONUNBUFFERED": "1"}
    subprocess.run([*FSS, "db", "upgrade"], env=env, check=True, capture_output=True,
                   timeout=60)
    log_path = tmp_path / "scheduler.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([*FSS, "scheduler", "--name", "masked"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while until not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=20)
    return log_path.read_text(errors="replace")


def test_given_a_broker_password_then_the_scheduler_start_line_masks_it(
    tmp_path: Path, redis_user_url: str
) -> None:
    output = _start_line_of_scheduler(tmp_path, redis_user_url, "scheduler masked running")
    assert PASSWORD not in output
    assert f"broker {mask_urls(redis_user_url)})" in output


def test_given_rabbitmq_with_a_password_then_the_fencing_warning_masks_it(
    tmp_path: Path,
) -> None:
    output = _start_line_of_scheduler(
        tmp_path, "amqp://guest:guest@127.0.0.1:5672//", "scheduler masked running"
    )
    assert "no Redis for fencing (broker amqp://guest:***@127.0.0.1:5672//)" in output
    assert "guest:guest" not in output
