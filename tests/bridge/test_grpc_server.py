"""The server around the sessions: token, health checking, reflection, TLS, binding."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from bridge_helpers import RawClient, ready_channel, self_signed
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from fss.bridge.grpc_server import RunningBridge, start_bridge
from fss.config import Settings
from fss.errors import InvalidField

TOKEN = "s3cret-token"


@pytest.fixture
def settings(fresh_redis_url: Callable[[], str]) -> Settings:
    return Settings(broker_url=fresh_redis_url(), heartbeat_s=0.4, client_timeout_s=1.2)


@pytest.fixture
def bridge(settings: Settings) -> Iterator[RunningBridge]:
    running = start_bridge(settings, listen="127.0.0.1:0", token=TOKEN)
    try:
        yield running
    finally:
        running.stop(grace_s=1)


@pytest.fixture
def channel(bridge: RunningBridge) -> Iterator[grpc.Channel]:
    with ready_channel(bridge.address) as opened:
        yield opened


@pytest.mark.parametrize(
    "metadata",
    [(), (("authorization", "Bearer wrong"),), (("authorization", TOKEN),)],
    ids=["missing", "wrong", "not-bearer"],
)
def test_given_a_token_when_a_call_lacks_it_then_unauthenticated_and_logged(
    channel: grpc.Channel, metadata: tuple[tuple[str, str], ...],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "fss.bridge.grpc_server")
    raw = RawClient(channel, metadata=metadata)
    raw.register("no-token")
    assert raw.wait_end() == grpc.StatusCode.UNAUTHENTICATED
    assert raw.received.empty()
    lines = [r.getMessage() for r in caplog.records if r.name == "fss.bridge.grpc_server"]
    reason = "no token" if not metadata else "wrong token"
    assert len(lines) == 1, lines
    assert lines[0].startswith("bridge refused a call to /fss.v1.Bridge/Connect from ipv4:127.")
    assert lines[0].endswith(f": {reason}")
    assert TOKEN not in lines[0] and "Bearer" not in lines[0]  # what was given is not logged


def test_given_a_token_when_a_call_carries_it_then_it_registers(channel: grpc.Channel) -> None:
    raw = RawClient(channel, metadata=[("authorization", f"Bearer {TOKEN}")])
    raw.register("with-token")
    assert raw.next("registered").registered.client_id == "with-token"
    raw.close()


def test_health_reports_serving_for_the_server_and_the_bridge_without_a_token(
    channel: grpc.Channel,
) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "fss.v1.Bridge"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_bridge_service(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    reply = next(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {service.name for service in reply.list_services_response.service}
    assert "fss.v1.Bridge" in names


def test_given_tls_then_a_client_trusting_the_cert_registers_and_plaintext_fails(
    settings: Settings, tmp_path: Path
) -> None:
    tls = self_signed(tmp_path)
    bridge = start_bridge(settings, listen="127.0.0.1:0", tls=tls)
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=tls.cert_pem)
        with grpc.secure_channel(bridge.address, credentials) as secure:
            raw = RawClient(secure)
            raw.register("over-tls")
            assert raw.next("registered").registered.client_id == "over-tls"
            raw.close()
        with grpc.insecure_channel(bridge.address) as plain:
            raw = RawClient(plain, wait_for_ready=False)
            raw.register("plaintext")
            assert raw.wait_end() == grpc.StatusCode.UNAVAILABLE
    finally:
        bridge.stop(grace_s=1)


def test_given_a_taken_port_or_a_bad_address_then_one_line_naming_listen(
    bridge: RunningBridge, settings: Settings
) -> None:
    with pytest.raises(InvalidField, match=r"^listen: cannot listen on"):
        start_bridge(settings, listen=f"127.0.0.1:{bridge.port}")
    with pytest.raises(InvalidField, match=r"^listen: 'nowhere' is not HOST:PORT"):
        start_bridge(settings, listen="nowhere")


def test_stop_is_idempotent_and_refuses_new_calls(
    bridge: RunningBridge, channel: grpc.Channel
) -> None:
    bridge.stop(grace_s=1)
    bridge.stop(grace_s=1)
    assert bridge.wait(timeout_s=1)
    raw = RawClient(
        channel, metadata=[("authorization", f"Bearer {TOKEN}")], wait_for_ready=False
    )
    raw.register("too-late")
    assert raw.wait_end() == grpc.StatusCode.UNAVAILABLE
