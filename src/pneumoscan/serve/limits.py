"""Bounds on the work a server takes on at once: requests in flight and the time a body may take.

Each upload request holds one slot from the moment its whole body has arrived until its answer is
ready, so clients that send slowly never hold one; when every slot is taken a new request is
answered 503 at once instead of queueing without bound.  A request body that does not arrive within
the time limit is answered 408 (and request headers have their own timeout,
:mod:`~pneumoscan.serve.protocol`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

from fastapi import HTTPException

T = TypeVar("T")


class InFlightLimit:
    """At most ``limit`` requests at once; the rest are refused with 503 (all on the event loop, no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the duration, or raise HTTPException 503 when none is free."""
        if self.active >= self.limit:
            raise HTTPException(
                503,
                f"the server is busy ({self.limit} requests in progress); try again in a moment",
                headers={"Retry-After": "1"},
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


async def within(seconds: float, work: Awaitable[T]) -> T:
    """``await work``, answering 408 when the client takes longer than ``seconds`` to send its body."""
    try:
        return await asyncio.wait_for(work, seconds)
    except asyncio.TimeoutError:
        raise HTTPException(
            408, f"the upload did not arrive within {seconds:g} s; check the connection and try again"
        ) from None
