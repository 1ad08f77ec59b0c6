"""What a process says about where it runs, when it registers as a client."""

from __future__ import annotations

import socket


def local_ip() -> str:
    """This host's address as its name resolves, or loopback when it does not."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
