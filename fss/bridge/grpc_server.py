# The generated gRPC code ships no annotations.
# mypy: disallow-untyped-calls=False
"""The gRPC server behind `fss bridge`: the Bridge service, health, reflection, auth, TLS.

`start_bridge(settings, listen="127.0.0.1:0")` starts one in-process (tests use port 0 and
read `RunningBridge.port`); `RunningBridge.stop()` is the graceful stop of SIGTERM: no new
calls, every session gets `cancel` for its running orders and `kicked`, their unfinished
orders are reported failed, and the events are flushed before it returns.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fss.bridge.proto.fss.v1 import fss_pb2, fss_pb2_grpc
from fss.bridge.session import BridgeHub, Session
from fss.config import Settings
from fss.domain.clock import Clock
from fss.errors import InvalidField

log = logging.getLogger(__name__)

SERVICE_NAME = "fss.v1.Bridge"
DEFAULT_LISTEN = "127.0.0.1:50051"
# A log line is at most 16 KiB, data 64 KiB: 1 MiB leaves room and refuses a 10 MB message
# (RESOURCE_EXHAUSTED) before it is ever parsed.
MAX_MESSAGE_BYTES = 1024 * 1024
# Each session holds one server thread (its response stream); sessions beyond this wait.
MAX_SESSIONS = 256
STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class TlsFiles:
    """PEM contents of the server's certificate chain and private key."""

    cert_pem: bytes
    key_pem: bytes


class BridgeService(fss_pb2_grpc.BridgeServicer):
    def __init__(self, hub: BridgeHub) -> None:
        self._hub = hub

    def Connect(
        self, request_iterator: Iterator[fss_pb2.ClientMessage], context: grpc.ServicerContext
    ) -> Iterator[fss_pb2.ServerMessage]:
        return Session(self._hub, context).run(request_iterator)


class TokenInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Calls to fss.v1.Bridge without `authorization: Bearer <token>` end UNAUTHENTICATED,
    each logged at WARNING with the peer's address and the method (never the token given).

    Health checks and reflection stay open: load balancers and grpcurl probe without it."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        if not details.method.startswith(f"/{SERVICE_NAME}/"):
            return continuation(details)
        given = self._given(details)
        if given is not None and hmac.compare_digest(given, self._expected):
            return continuation(details)
        return self._refusal(details.method, "no token" if given is None else "wrong token")

    @staticmethod
    def _given(details: grpc.HandlerCallDetails) -> bytes | None:
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                return value.encode() if isinstance(value, str) else bytes(value)
        return None

    @staticmethod
    def _refusal(method: str, reason: str) -> grpc.RpcMethodHandler:
        # The peer is known only to the handler's context, not to the interceptor.
        def refuse(_request: Any, context: grpc.ServicerContext) -> None:
            log.warning("bridge refused a call to %s from %s: %s", method, context.peer(), reason)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")

        return grpc.stream_stream_rpc_method_handler(refuse)


class RunningBridge:
    """A started bridge: its port, its sessions' hub, and the graceful stop."""

    def __init__(
        self, server: grpc.Server, hub: BridgeHub, host: str, port: int, health: Any
    ) -> None:
        self.server = server
        self.hub = hub
        self.host = host
        self.port = port
        self._health = health
        self._stopped = False

    @property
    def address(self) -> str:
        """Where a client on this machine connects (127.0.0.1 for a wildcard host)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "[::]", "") else self.host
        return f"{host}:{self.port}"

    @property
    def listening(self) -> str:
        """The listen address with the port actually bound."""
        return f"{self.host}:{self.port}"

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop accepting calls, kick every session (cancelling its running orders), report
        their unfinished orders failed, flush the events. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._health.enter_graceful_shutdown()
        # Refuse new calls first, so no session registers while the others are kicked.
        done = self.server.stop(grace_s + 1.0)
        self.hub.stop("bridge stopping", timeout_s=grace_s)
        done.wait(grace_s + 1.0)
        self.hub.close()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the server stopped; False if `timeout_s` ran out first."""
        timed_out = self.server.wait_for_termination(timeout_s)
        return not timed_out


def start_bridge(
    settings: Settings,
    listen: str = "127.0.0.1:0",
    token: str | None = None,
    tls: TlsFiles | None = None,
    clock: Clock | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> RunningBridge:
    """Serve fss.v1.Bridge (plus health and reflection) on `listen` (host:port; port 0 picks
    a free one) and return at once; InvalidField if the address cannot be bound."""
    hub = BridgeHub(settings, clock=clock)
    interceptors = [TokenInterceptor(token)] if token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_SESSIONS + 8, thread_name_prefix="fss-bridge"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=MAX_SESSIONS,
    )
    fss_pb2_grpc.add_BridgeServicer_to_server(BridgeService(hub), server)
    health_servicer = add_health(server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = bind(server, listen, tls)
    server.start()
    hub.start()
    host = listen.rpartition(":")[0]
    log.debug("bridge %s listening on %s:%d (%s)", hub.node, host, port, "TLS" if tls else "h2c")
    return RunningBridge(server, hub, host, port, health_servicer)


def add_health(server: grpc.Server) -> health.HealthServicer:
    servicer = health.HealthServicer()
    for name in ("", SERVICE_NAME):
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer


def bind(server: grpc.Server, listen: str, tls: TlsFiles | None) -> int:
    check_listen(listen)
    try:
        if tls is None:
            port = server.add_insecure_port(listen)
        else:
            credentials = grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)])
            port = server.add_secure_port(listen, credentials)
    except RuntimeError as exc:  # grpc: "Failed to bind to address ..."
        raise InvalidField("listen", f"cannot listen on {listen!r} ({exc})") from None
    if port == 0:
        raise InvalidField("listen", f"cannot listen on {listen!r}")
    return int(port)


def check_listen(listen: str) -> str:
    host, separator, port = listen.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidField("listen", f"{listen!r} is not HOST:PORT (e.g. 127.0.0.1:50051)")
    return listen
