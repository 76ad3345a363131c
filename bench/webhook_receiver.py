"""A minimal HTTP/1.1 webhook receiver for bench.delivery: answers 200 at once, keeps-alive,
records (receipt time, delivery id, event id) per request; writes them as JSON on SIGTERM.

Usage: python -m bench.webhook_receiver PORT OUT.json
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class Receiver(asyncio.Protocol):
    records: list[tuple[float, str, str]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].decode("latin-1").lower()
            length = 0
            delivery_id = ""
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name == "content-length":
                    length = int(value)
                elif name == "x-pulse-delivery-id":
                    delivery_id = value.strip()
            end = head_end + 4 + length
            if len(self.buf) < end:
                return
            body = self.buf[head_end + 4 : end]
            self.buf = self.buf[end:]
            event_id = ""
            with contextlib.suppress(ValueError):
                event_id = json.loads(body).get("event_id", "")
            self.records.append((time.time(), delivery_id, event_id))
            self.transport.write(_OK)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    server = await loop.create_server(Receiver, "127.0.0.1", port, backlog=1024)
    await stop.wait()
    server.close()


def main() -> None:
    asyncio.run(serve(int(sys.argv[1])))
    with open(sys.argv[2], "w") as f:
        json.dump(Receiver.records, f)


if __name__ == "__main__":
    main()
