"""Real receivers for the alert delivery tests: an HTTP server recording every request and
answering as told, one that accepts and never answers, and SMTP servers (aiosmtpd) in
plain text, with STARTTLS + AUTH, and with TLS from the first byte.

Imported by tests/alerting and tests/cli as `from alerting.receivers import ...` (tests/ is
on sys.path, see tests/conftest.py).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session


@dataclass
class Received:
    method: str
    path: str
    # Looked up without regard to case, as HTTP has them.
    headers: Message
    body: bytes


@dataclass
class HttpReceiver:
    """A local HTTP server: `answers` (status, body) are given in turn (the last repeats);
    every request lands in `requests`."""

    answers: list[tuple[int, bytes]] = field(default_factory=lambda: [(200, b"ok")])
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    # Echo the request line and headers back in the answer (to check they get scrubbed).
    echo: bool = False
    # Set: the first request is recorded, then held unanswered until this is set (a sender
    # killed while it waits for the answer).
    hold: threading.Event | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def http_receiver(
    *answers: tuple[int, bytes], echo: bool = False, hold: threading.Event | None = None
) -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(list(answers) or [(200, b"ok")], echo=echo, hold=hold)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with lock:
                receiver.requests.append(Received("POST", self.path, self.headers, body))
                index = min(len(receiver.requests) - 1, len(receiver.answers) - 1)
                status, answer = receiver.answers[index]
                first = len(receiver.requests) == 1
            if first and receiver.hold is not None:
                receiver.hold.wait(60)
            if receiver.echo:
                answer = (self.requestline + "\n" + str(self.headers)).encode() + body
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            if 300 <= status < 400:
                self.send_header("Location", receiver.url("/elsewhere"))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_receiver() -> Iterator[str]:
    """A URL whose server accepts connections and reads, and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook?token=s3cr3t-token"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class SmtpReceiver:
    port: int
    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)


class _Handler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self.receiver = receiver

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        parsed = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.receiver.messages.append((envelope, parsed))
        return "250 OK queued as fss-test"


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, made with the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@contextmanager
def smtp_receiver(
    *,
    cert: tuple[Path, Path] | None = None,
    implicit_tls: bool = False,
    users: dict[str, str] | None = None,
) -> Iterator[SmtpReceiver]:
    """aiosmtpd on 127.0.0.1: plain; with `cert` STARTTLS (or TLS from the first byte with
    implicit_tls); with `users` AUTH required (only over TLS, as aiosmtpd insists)."""
    receiver = SmtpReceiver(port=free_port())
    context = None
    if cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert[0]), str(cert[1]))

    def authenticate(
        server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or users is None:
            return AuthResult(success=False, handled=False)
        user, password = data.login.decode(), data.password.decode()
        ok = users.get(user) == password
        if ok:
            receiver.logins.append((user, password))
        # handled=False: aiosmtpd answers the refusal (535) itself.
        return AuthResult(success=ok, handled=False)

    kwargs: dict[str, Any] = {}
    if users is not None:
        kwargs.update(authenticator=authenticate, auth_required=True)
    if context is not None and not implicit_tls:
        kwargs.update(tls_context=context, require_starttls=True)
    controller = Controller(
        _Handler(receiver),
        hostname="127.0.0.1",
        port=receiver.port,
        ssl_context=context if implicit_tls else None,
        server_hostname="127.0.0.1",
        **kwargs,
    )
    controller.start()
    try:
        yield receiver
    finally:
        controller.stop()
