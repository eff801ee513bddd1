"""The server's listening socket, bound before anything is announced, so a bad port is one line."""

from __future__ import annotations

import socket

from pneumoscan.errors import PneumoscanError


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (ready for uvicorn); one-line errors for bad or busy addresses."""
    if not 0 <= port <= 65535:
        raise PneumoscanError(f"--port {port}: a port is a number from 1 to 65535 (0: any free port)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise PneumoscanError(f"--host {host}: not an address of this machine ({exc.strerror})") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise PneumoscanError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or stop the "
            "program using it"
        ) from exc
    sock.set_inheritable(True)
    return sock
