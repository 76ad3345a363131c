"""The baseline: a bare MQTT subscriber moving the same messages to the same stream, no checks.

It reads with the same client as ingest (gmqtt, MQTT 5, QoS 1, same Receive Maximum, but acks
on receipt) and writes like ingest (ObservationPublisher: pipelined XADD batches), so the
ratio isolates the cost of ingest's checks, auth, quarantine, observation building and
ack-after-publish.
python -m bench.baseline_subscriber MQTT_URL REDIS_URL STREAM CLIENT_ID RECEIVE_MAX
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any
from urllib.parse import urlsplit

import gmqtt
import redis.asyncio as aioredis

from services.common.lifecycle import run_main
from services.ingest.publisher import ObservationPublisher


def main() -> None:
    mqtt_url, redis_url, stream, client_id, receive_max = sys.argv[1:6]

    async def run(stop: asyncio.Event) -> None:
        r = aioredis.from_url(redis_url)
        publisher = ObservationPublisher(r, stream, maxlen=10_000_000)
        flush_stop = asyncio.Event()
        flusher = asyncio.create_task(publisher.run(flush_stop))

        def on_message(client: gmqtt.Client, topic: str, payload: bytes, qos: int, properties: Any) -> int:
            publisher.add(payload)
            return 0

        client = gmqtt.Client(
            client_id, clean_session=False, session_expiry_interval=3600, receive_maximum=int(receive_max)
        )
        client.on_message = on_message
        client.on_connect = lambda c, flags, rc, props: c.subscribe("tenant/+/device/+/+", qos=1)
        url = urlsplit(mqtt_url)
        await client.connect(url.hostname or "127.0.0.1", url.port or 1883)
        await stop.wait()
        await client.disconnect()
        flush_stop.set()
        await flusher
        await r.aclose()

    run_main(run)


if __name__ == "__main__":
    main()
