"""How the server speaks HTTP: uvicorn's h11 protocol with a header timeout.

uvicorn closes idle keep-alive connections but waits forever for a client that sends its request
headers a byte at a time.  Here a connection must deliver complete request headers within
``header_timeout`` seconds of being opened, or of the previous answer, or it is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from pneumoscan.serve import DEFAULT_HEADER_TIMEOUT_S


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol that closes a connection whose request headers do not arrive in time."""

    header_timeout = DEFAULT_HEADER_TIMEOUT_S
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._start_header_timer()  # the next request on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():  # no complete request yet
            self.logger.info(
                "closing a connection that sent no complete request headers within %g s", self.header_timeout
            )
            self.transport.close()


def server_config(
    app: Any, *, header_timeout: float = DEFAULT_HEADER_TIMEOUT_S, log_level: str = "info"
) -> uvicorn.Config:
    """The uvicorn configuration serving ``app``, closing connections slower than ``header_timeout`` s."""

    class Protocol(HeaderTimeoutProtocol):
        pass

    Protocol.header_timeout = header_timeout
    return uvicorn.Config(app, http=Protocol, log_level=log_level)
