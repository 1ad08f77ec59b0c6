"""`fss bridge`: its help, one-line errors for bad flags, and a real process with a token
that serves a client, refuses one without the token and stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc
from runtime_python import runtime_python
from servers import wait_for

from fss.cli import cli, main

TESTS_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS_DIR / "bridge"))

from bridge_helpers import RawClient  # noqa: E402

FSS = [runtime_python(), "-c", "from fss.cli import main; main()"]


def test_help_names_every_option_and_what_the_bridge_needs() -> None:
    result = CliRunner().invoke(cli, ["bridge", "--help"])
    assert result.exit_code == 0
    for text in ("--listen", "--token-file", "--tls-cert", "--tls-key", "--broker-url",
                 "127.0.0.1:50051", "never the database"):
        assert text in result.output
    assert "--database-url" not in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--token-file", "{empty}"], "error: token_file: '{empty}' is empty; put the token in it"),
        (["--token-file", "{missing}"], "error: token_file: cannot read '{missing}'"),
        (["--listen", "50051"], "error: listen: '50051' is not HOST:PORT"),
        (["--tls-cert", "{empty}"], "error: tls_key: give --tls-cert and --tls-key together"),
        (["--broker-url", "nope"], "error: broker_url: 'nope' is not a URL"),
        (["--no-such-flag"], "error: No such option '--no-such-flag'"),
    ],
    ids=["empty-token", "missing-token", "listen", "tls-half", "broker", "unknown-flag"],
)
def test_given_a_bad_flag_then_one_line_and_exit_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    paths = {"empty": str(empty), "missing": str(tmp_path / "missing")}
    with pytest.raises(SystemExit) as exit_info:
        main(["bridge", *(arg.format(**paths) for arg in args)])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith(expected.format(**paths)), stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="fss.v1.Bridge"), timeout=0.5
            )
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def test_given_a_token_file_then_the_process_serves_with_it_and_stops_on_sigterm(
    tmp_path: Path, fresh_redis_url: Callable[[], str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-123\n")
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [*FSS, "bridge", "--listen", address, "--token-file", str(token_file),
         "--broker-url", fresh_redis_url()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: process.poll() is not None or serving(address), 30, what="bridge up")
        assert process.poll() is None
        with grpc.insecure_channel(address) as channel:
            refused = RawClient(channel)
            refused.register("no-token")
            assert refused.wait_end() == grpc.StatusCode.UNAUTHENTICATED
            raw = RawClient(channel, metadata=[("authorization", "Bearer tok-123")])
            raw.register("cli-client")
            raw.beating.set()
            assert raw.next("registered").registered.client_id == "cli-client"
            process.send_signal(signal.SIGTERM)
            assert raw.next("kicked").kicked.reason == "bridge stopping"
            assert raw.wait_end() == grpc.StatusCode.UNAVAILABLE
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert f"serving on {address}" in stderr
    assert "session of client cli-client (node" in stderr
    assert "client cli-client" in stderr and "ended: bridge stopping" in stderr


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [("127.0.0.1:50051", True), ("localhost:1", True), ("[::1]:50051", True),
     ("0.0.0.0:50051", False), ("[::]:50051", False), ("10.1.2.3:9", False)],
)
def test_an_open_bridge_without_token_is_told_apart_from_a_loopback_one(
    listen: str, loopback: bool
) -> None:
    from fss.cli.bridge import is_loopback

    assert is_loopback(listen) is loopback
