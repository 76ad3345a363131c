"""Numbered plain-SQL migrations: applied once, recorded, and never silently changed.

Files are db/migrations/NNNN_name.sql. Each runs in its own transaction as the schema
owner role, unless its first line is `-- pulse:as-admin` (role and grant set-up). The
runner refuses to go on when an applied file's checksum differs from the recorded one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.common import constants

__all__ = ["DEFAULT_DIR", "Migration", "MigrationError", "discover", "migrate"]

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "db" / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_ADMIN_MARK = "-- pulse:as-admin"
_LOCK_KEY = 0x50554C5345  # "PULSE": one migrate run at a time per database


class MigrationError(Exception):
    """The migrations on disk and those recorded in the database disagree."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def as_admin(self) -> bool:
        return self.sql.startswith(_ADMIN_MARK)


def discover(directory: Path = DEFAULT_DIR) -> list[Migration]:
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files must be named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is used twice")
        found[version] = Migration(version, match.group(2), path, path.read_text())
    return [found[v] for v in sorted(found)]


async def migrate(url: str, directory: Path = DEFAULT_DIR) -> list[Migration]:
    """Apply pending migrations; return those applied (empty when already up to date)."""
    migrations = discover(directory)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS pulse_schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, name, checksum FROM pulse_schema_migrations")
        applied = {r["version"]: r for r in rows}
        on_disk = {m.version: m for m in migrations}
        for version, row in sorted(applied.items()):
            m = on_disk.get(version)
            if m is None:
                raise MigrationError(
                    f"migration {version:04d}_{row['name']}.sql was applied but is missing from {directory}; restore it"
                )
            if m.checksum != row["checksum"]:
                raise MigrationError(
                    f"{m.path.name} was changed after it was applied (recorded sha256 "
                    f"{row['checksum'][:12]}, file {m.checksum[:12]}); applied migrations are "
                    "immutable: revert the edit and add a new numbered migration instead"
                )
        done: list[Migration] = []
        for m in migrations:
            if m.version in applied:
                continue
            async with conn.transaction():
                if not m.as_admin:
                    await conn.execute(f"SET LOCAL ROLE {constants.DB_ROLE_OWNER}")
                try:
                    await conn.execute(m.sql)
                except asyncpg.PostgresError as exc:
                    raise MigrationError(f"{m.path.name} failed: {exc}") from exc
                await conn.execute("RESET ROLE")
                await conn.execute(
                    "INSERT INTO pulse_schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            done.append(m)
        return done
    finally:
        await conn.close()
