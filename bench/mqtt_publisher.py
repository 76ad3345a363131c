"""Publish pre-built device messages over MQTT QoS 1 as fast as allowed (or at a fixed rate).

Runs in its own process so its CPU is not the measured process's. gmqtt, as paho could not
publish much over 3,000 msg/s here.
python -m bench.mqtt_publisher HOST PORT MESSAGES_FILE RATE(0 = flat out) SENT_TIMES_FILE
MESSAGES_FILE holds JSON lines [topic, payload]; SENT_TIMES_FILE receives the wall-clock send
time (ms) of each message, in order.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable

import gmqtt


async def publish(host: str, port: int, messages: list[list[str]], rate: float, window: int = 5000) -> list[float]:
    """Publish in order; at most `window` unacknowledged (MQTT packet ids are 16-bit)."""
    unacked = 0
    progress = asyncio.Event()

    def on_ack() -> None:
        nonlocal unacked
        unacked -= 1
        progress.set()

    client = gmqtt.Client(f"bench-pub-{uuid.uuid4().hex[:6]}", receive_maximum=65535)
    await client.connect(host, port)
    client._package_handler._handle_puback_packet = _counting(client, on_ack)
    # the broker's Receive Maximum (mosquitto: max_inflight_messages) bounds what may be unacked
    window = min(window, client._package_handler.id_generator._max - 1)
    sent: list[float] = []
    start = time.perf_counter()
    for n, (topic, payload) in enumerate(messages):
        if rate and n % 50 == 0:
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        while unacked >= window:
            progress.clear()
            await progress.wait()
        sent.append(time.time() * 1000)
        client.publish(topic, payload.encode(), qos=1)
        unacked += 1
    deadline = time.monotonic() + 120
    while unacked > 0 and time.monotonic() < deadline:
        progress.clear()
        await asyncio.wait_for(progress.wait(), 120)
    await client.disconnect()
    return sent


def _counting(client: gmqtt.Client, on_ack: Callable[[], None]) -> Callable[[int, bytes], None]:
    original = client._package_handler._handle_puback_packet

    def handle(cmd: int, packet: bytes) -> None:
        original(cmd, packet)
        on_ack()

    return handle


def main() -> None:
    host, port, messages_file, rate, times_file = (
        sys.argv[1],
        int(sys.argv[2]),
        sys.argv[3],
        float(sys.argv[4]),
        sys.argv[5],
    )
    with open(messages_file) as fh:
        messages = [json.loads(line) for line in fh]
    sent = asyncio.run(publish(host, port, messages, rate))
    with open(times_file, "w") as fh:
        json.dump(sent, fh)


if __name__ == "__main__":
    main()
