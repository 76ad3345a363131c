"""The `pulse` command: migrate the database, run one service, or run the platform locally."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from services.common import constants
from services.common.config import ConfigError, Secret, Url, env, load
from services.common.migrations import MigrationError, migrate
from services.devstack.stack import is_built

__all__ = ["main"]


@dataclass(frozen=True)
class MigrateSettings:
    database_url: Url = env(
        "PULSE_DATABASE_URL",
        Url("postgresql://postgres@127.0.0.1:5432/pulse"),
        schemes=("postgresql", "postgres"),
    )
    # migrations need a superuser (or CREATEROLE); services log in as pulse_service
    migrate_url: Url | None = env("PULSE_MIGRATE_DATABASE_URL", None, schemes=("postgresql", "postgres"))
    service_password: Secret | None = env("PULSE_DB_SERVICE_PASSWORD", None)


async def _migrate(settings: MigrateSettings) -> None:
    url = settings.migrate_url or settings.database_url
    applied = await migrate(url)
    for m in applied:
        print(f"applied {m.path.name}")
    print(f"{len(applied)} migration(s) applied" if applied else "schema is up to date")
    if settings.service_password is not None:
        conn = await asyncpg.connect(url)
        try:
            # ALTER ROLE cannot take bind parameters; quote the literal on the server
            literal = await conn.fetchval("SELECT quote_literal($1)", settings.service_password.get())
            await conn.execute(f"ALTER ROLE {constants.DB_ROLE_SERVICE} PASSWORD {literal}")
        finally:
            await conn.close()
        print(f"password set for role {constants.DB_ROLE_SERVICE}")


def cmd_migrate(_: argparse.Namespace) -> int:
    try:
        settings = load(MigrateSettings)
        asyncio.run(_migrate(settings))
    except (ConfigError, MigrationError) as exc:
        print(f"pulse migrate: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"pulse migrate: cannot migrate the database: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    name = args.service
    pkg = constants.SERVICES.get(name) or constants.SERVICES.get(name.replace("_", "-"))
    if pkg is None:
        print(f"pulse run: unknown service {name!r}; one of: {', '.join(constants.SERVICES)}", file=sys.stderr)
        return 2
    if not is_built(pkg):
        print(f"pulse run: service {name!r} is not part of this build yet", file=sys.stderr)
        return 2
    module = importlib.import_module(f"services.{pkg}.__main__")
    module.main()
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from services.devstack.stack import DevPorts, run_dev

    ports = DevPorts(postgres=args.pg_port, redis=args.redis_port, mqtt=args.mqtt_port, http_base=args.http_port)
    fleet = None if args.no_fleet else (args.fleet_tenants, args.fleet_devices)
    return run_dev(Path(args.data_dir), ports, fleet=fleet)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pulse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("migrate", help="apply database migrations (PULSE_MIGRATE_DATABASE_URL or PULSE_DATABASE_URL)")
    p.set_defaults(func=cmd_migrate)
    p = sub.add_parser("run", help="run one service: " + ", ".join(constants.SERVICES))
    p.add_argument("service")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("dev", help="run the platform locally on embedded real servers (no Docker)")
    p.add_argument("--data-dir", default=".cache/dev", help="where server data lives (default .cache/dev)")
    p.add_argument("--pg-port", type=int, default=55432)
    p.add_argument("--redis-port", type=int, default=56379)
    p.add_argument("--mqtt-port", type=int, default=51883)
    p.add_argument("--http-port", type=int, default=8080, help="ui port; ingest gets the next, and so on")
    p.add_argument("--fleet-tenants", type=int, default=1, help="simulated fleet: tenants")
    p.add_argument("--fleet-devices", type=int, default=3, help="simulated fleet: devices per tenant")
    p.add_argument("--no-fleet", action="store_true", help="do not run the device simulator")
    p.set_defaults(func=cmd_dev)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
