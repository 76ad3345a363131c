"""Turn alert events into delivery jobs: route matching, throttling, idempotent job creation.

For a batch of `pulse:alerts` entries, in one worker transaction: read each event's alert
(site) and the tenant's enabled routes to enabled integrations, pick the best matching route
per integration, drop re-notifications the route throttles, and INSERT one job per
integration with ON CONFLICT (event_id, integration_id) DO NOTHING — a replayed event creates
nothing new. After the commit the still-pending jobs of these events are announced on
`pulse:deliveries` ({v, job_id}); a lost announcement only delays a job until the workers'
next poll. The bus acks the entries after this returns.

Throttling (repeat_interval_s of the chosen route), per (alert, integration, transition):
NULL notifies once; N > 0 notifies again only when the last job for the same transition is
at least N seconds old. Events of one alert are serialised with an advisory lock so two
dispatchers cannot both decide "not yet notified".
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import Counter

from services.common.bus import Entry, RetryLater, publish_many
from services.common.db import Conn, Database
from services.dispatcher.routing import AlertEvent, Route, choose_routes, decode_event

__all__ = ["Dispatcher", "EventNotFound"]

log = logging.getLogger("pulse.dispatcher")

_JOBS = Counter("pulse_dispatcher_jobs_created_total", "Delivery jobs created")
_THROTTLED = Counter("pulse_dispatcher_throttled_total", "Matches dropped by a route's repeat interval")


class EventNotFound(LookupError):
    """The event's alert_events row is not (yet) in Postgres: retried by the bus, then dead-lettered."""


_EVENT = """
SELECT a.site_id, a.device_id FROM alert_events e JOIN alerts a ON a.alert_id = e.alert_id
 WHERE e.event_id = $1 AND e.tenant_id = $2
"""

_ROUTES = """
SELECT r.route_id, r.integration_id, r.min_severity, r.alert_types, r.device_ids, r.device_glob, r.site_ids,
       r.transitions, r.priority, r.repeat_interval_s
  FROM integration_routes r
  JOIN integrations i ON i.tenant_id = r.tenant_id AND i.integration_id = r.integration_id
 WHERE r.tenant_id = $1 AND r.enabled AND i.enabled
"""

# the newest earlier job of this alert, integration and transition (other than this event's)
_LAST_NOTIFIED = """
SELECT max(j.created_at) >= now() - make_interval(secs => $5) AS recent, count(*) > 0 AS any
  FROM delivery_jobs j JOIN alert_events e ON e.event_id = j.event_id
 WHERE j.alert_id = $1 AND j.integration_id = $2 AND e.status = $3 AND j.event_id <> $4
"""

_INSERT = """
INSERT INTO delivery_jobs (tenant_id, event_id, alert_id, integration_id, route_id)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (event_id, integration_id) DO NOTHING
RETURNING job_id
"""


class Dispatcher:
    """The `pulse:alerts` handler of consumer group `dispatcher`."""

    def __init__(self, db: Database, r: aioredis.Redis, *, deliveries_stream: str, maxlen: int) -> None:
        self.db = db
        self.redis = r
        self.deliveries_stream = deliveries_stream
        self.maxlen = maxlen
        self.jobs_created = 0
        self.throttled = 0

    async def handle(self, entries: list[Entry]) -> None:
        """The bus handler; Postgres or Redis being unreachable is RetryLater (no failure counted:
        the entries wait in the stream instead of being dead-lettered)."""
        events = [decode_event(e.data) for e in entries]
        try:
            await self._handle(events)
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError, aioredis.ConnectionError) as exc:
            raise RetryLater(f"{type(exc).__name__}: {exc}") from exc

    async def _handle(self, events: list[AlertEvent]) -> None:
        pending: list[str] = []
        async with self.db.worker() as conn:
            routes_by_tenant: dict[str, list[Route]] = {}
            for event in events:
                if event.tenant_id not in routes_by_tenant:
                    rows = await conn.fetch(_ROUTES, event.tenant_id)
                    routes_by_tenant[event.tenant_id] = [Route.from_row(row) for row in rows]
                await self._dispatch(conn, event, routes_by_tenant[event.tenant_id])
            for event in events:
                rows = await conn.fetch(
                    "SELECT job_id FROM delivery_jobs WHERE event_id = $1 AND state = 'PENDING'", event.event_id
                )
                pending.extend(str(row["job_id"]) for row in rows)
        if pending:
            await publish_many(self.redis, self.deliveries_stream, [{"job_id": j} for j in pending], maxlen=self.maxlen)

    async def _dispatch(self, conn: Conn, event: AlertEvent, routes: list[Route]) -> None:
        row = await conn.fetchrow(_EVENT, event.event_id, event.tenant_id)
        if row is None:
            raise EventNotFound(f"alert event {event.event_id} of tenant {event.tenant_id} not found")
        site_id = event.site_id if event.site_id is not None else row["site_id"]
        chosen = choose_routes(routes, event, site_id)
        if not chosen:
            log.debug("no route matches", extra=_ids(event))
            return
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", event.alert_id)
        for route in chosen:
            if await self._throttled(conn, event, route):
                self.throttled += 1
                _THROTTLED.inc()
                log.info("re-notification throttled", extra={**_ids(event), "route_id": route.route_id})
                continue
            job_id = await conn.fetchval(
                _INSERT, event.tenant_id, event.event_id, event.alert_id, route.integration_id, route.route_id
            )
            if job_id is not None:
                self.jobs_created += 1
                _JOBS.inc()
                log.info(
                    "delivery job created",
                    extra={**_ids(event), "job_id": str(job_id), "integration_id": route.integration_id},
                )

    async def _throttled(self, conn: Conn, event: AlertEvent, route: Route) -> bool:
        interval = float(route.repeat_interval_s or 0)
        last = await conn.fetchrow(
            _LAST_NOTIFIED, event.alert_id, route.integration_id, event.status, event.event_id, interval
        )
        if last is None or not last["any"]:
            return False
        if route.repeat_interval_s is None:
            return True
        return bool(last["recent"])


def _ids(event: AlertEvent) -> dict[str, Any]:
    return {
        "tenant_id": event.tenant_id,
        "event_id": event.event_id,
        "alert_id": event.alert_id,
        "transition": event.status,
        "severity": event.severity,
    }
