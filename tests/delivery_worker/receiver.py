"""A real HTTP receiver for delivery tests: records every request, answers from a script."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.common.http import serve
from services.devstack import free_port


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic()
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Receiver:
    url: str
    port: int
    received: list[Received] = field(default_factory=list)
    script: list[Reply] = field(default_factory=list)  # consumed in order; then `default`
    default: Reply = field(default_factory=Reply)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.received.append(Received(time.monotonic(), request.method, request.url.path, dict(request.headers), body))
        reply = self.script.pop(0) if self.script else self.default
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return Response(b"", status_code=reply.status, headers=reply.headers)


@asynccontextmanager
async def http_receiver(port: int | None = None) -> AsyncIterator[Receiver]:
    port = port or free_port()
    receiver = Receiver(url=f"http://127.0.0.1:{port}/hook", port=port)
    app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["GET", "POST", "PUT"])])
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, "127.0.0.1", port, stop))
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    await client.get(f"http://127.0.0.1:{port}/ready")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.02)
        receiver.received.clear()
        yield receiver
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
