"""Session-wide real servers (PostgreSQL, Redis, Mosquitto) and per-test clean state.

Servers start lazily: a test that asks for none of these fixtures starts nothing.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.common.db import Database
from services.common.migrations import migrate
from services.devstack import MosquittoServer, PostgresServer, RedisServer

TEST_DB = "pulse_test"


@pytest.fixture(scope="session")
def server_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="pulse-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server(server_root: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(server_root / "postgres", durable=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(server_root: Path) -> Iterator[RedisServer]:
    server = RedisServer(server_root / "redis", durable=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mqtt_server(server_root: Path) -> Iterator[MosquittoServer]:
    server = MosquittoServer(server_root / "mosquitto")
    server.start()
    yield server
    server.stop()


@dataclass(frozen=True)
class DbUrls:
    admin: str  # superuser: migrations, test set-up and clean-up
    service: str  # what services use: the pulse_service login role


@pytest.fixture(scope="session")
def db_urls(pg_server: PostgresServer) -> DbUrls:
    pg_server.ensure_database(TEST_DB)
    urls = DbUrls(admin=pg_server.url("postgres", TEST_DB), service=pg_server.url("pulse_service", TEST_DB))
    asyncio.run(migrate(urls.admin))
    return urls


async def _truncate_all(admin_url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) AS t FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'pulse_schema_migrations'"
        )
        if tables:
            names = ", ".join(r["t"] for r in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def admin_conn(db_urls: DbUrls) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to a freshly emptied test database (for set-up and checks)."""
    await _truncate_all(db_urls.admin)
    conn = await asyncpg.connect(db_urls.admin)
    yield conn
    await conn.close()


@pytest.fixture
async def db(db_urls: DbUrls, admin_conn: asyncpg.Connection) -> AsyncIterator[Database]:
    """The services' Database (login role pulse_service) over an emptied test database."""
    database = await Database.connect(db_urls.service, max_size=5)
    yield database
    await database.close()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client to an emptied Redis."""
    client = aioredis.from_url(redis_server.url(), decode_responses=False)
    await client.flushall()
    yield client
    await client.aclose()
