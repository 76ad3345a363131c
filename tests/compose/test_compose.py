"""The compose stack and the container image, checked statically: no Docker engine needed.

compose/docker-compose.yml is parsed with YAML and interpolated from compose/.env the way
`docker compose` does it (`${VAR}`, `${VAR:-default}`, `$$`); the Dockerfile is read
instruction by instruction.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.common.config import CommonSettings, ConfigError, load
from services.common.constants import SERVICES

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_FILE = COMPOSE_DIR / ".env"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

MIGRATE = "migrate"
HEALTHY = "service_healthy"
COMPLETED = "service_completed_successfully"
# Shared settings every Pulse container gets (docs/ARCHITECTURE.md, "Shared conventions").
SHARED_ENV = {
    "PULSE_MODE",
    "PULSE_DATABASE_URL",
    "PULSE_REDIS_URL",
    "PULSE_MQTT_URL",
    "PULSE_KAFKA_BROKERS",
    "PULSE_TELEMETRY_BACKEND",
    "PULSE_INFLUXDB3_URL",
    "PULSE_INFLUXDB3_TOKEN",
    "PULSE_KEYCLOAK_URL",
    "PULSE_KEYCLOAK_REALM",
    "PULSE_ADMIN_KEYS",
}
REALM_ROLES = {"customer_viewer", "customer_admin", "operator", "operator_admin"}


# ------------------------------------------------------------------ compose interpolation

_REFERENCE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.DOTALL)


def interpolate(text: str, env: Mapping[str, str], missing: set[str]) -> str:
    """Substitute compose variables in `text`; record names that are unset and have no default."""

    def substitute(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group("named") is not None:
            name = m.group("named")
            if name not in env:
                missing.add(name)
            return env.get(name, "")
        parts = _BRACED.fullmatch(m.group("braced"))
        if parts is None:
            raise ValueError(f"invalid interpolation {m.group(0)!r}")
        name, op, arg = parts.group("name", "op", "arg")
        value = env.get(name)
        if op is None:
            if value is None:
                missing.add(name)
            return value or ""
        unset = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return interpolate(arg, env, missing) if unset else str(value)
        if op.endswith("?"):
            if unset:
                missing.add(name)
            return value or ""
        return "" if unset else interpolate(arg, env, missing)  # ":+" / "+"

    return _REFERENCE.sub(substitute, text)


def _map_strings(node: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(node, str):
        return fn(node)
    if isinstance(node, dict):
        return {key: _map_strings(value, fn) for key, value in node.items()}
    if isinstance(node, list):
        return [_map_strings(item, fn) for item in node]
    return node


@cache
def env_file() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_FILE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"compose/.env: not KEY=VALUE: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


@cache
def raw_compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(doc, dict)
    return doc


@cache
def _interpolated() -> tuple[dict[str, Any], frozenset[str]]:
    missing: set[str] = set()
    doc = _map_strings(raw_compose(), lambda s: interpolate(s, env_file(), missing))
    return doc, frozenset(missing)


def compose() -> dict[str, Any]:
    return _interpolated()[0]


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def is_built(svc: Mapping[str, Any]) -> bool:
    return "build" in svc


def is_one_shot(svc: Mapping[str, Any]) -> bool:
    return str(svc.get("restart", "no")) == "no"


def pulse_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services().items() if is_built(svc) and not is_one_shot(svc)}


def infra_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services().items() if not is_built(svc)}


def long_running() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services().items() if not is_one_shot(svc)}


def depends_on(svc: Mapping[str, Any]) -> dict[str, str]:
    """depends_on as {service: condition}; the list form means service_started."""
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def has_healthcheck(svc: Mapping[str, Any]) -> bool:
    check = svc.get("healthcheck")
    if not check or check.get("disable"):
        return False
    test = check.get("test")
    return bool(test) and test not in (["NONE"], "NONE")


def memory_bytes(svc: Mapping[str, Any]) -> int:
    limit = svc.get("mem_limit") or svc.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory")
    if limit is None:
        return 0
    m = re.fullmatch(r"(\d+)\s*([bkmg]?)b?", str(limit).strip().lower())
    assert m, f"unreadable memory limit {limit!r}"
    return int(m.group(1)) * 1024 ** "bkmg".index(m.group(2) or "b")


def volume_source(entry: str | Mapping[str, Any]) -> tuple[str, str]:
    """(kind, source) of a service volume: kind is "volume" or "bind"."""
    if isinstance(entry, Mapping):
        return str(entry.get("type", "volume")), str(entry.get("source", ""))
    source = entry.split(":", 1)[0]
    kind = "bind" if source.startswith((".", "/", "~")) else "volume"
    return kind, source


def image_is_pinned(ref: str) -> bool:
    if re.search(r"@sha256:[0-9a-f]{64}$", ref):
        return True
    _, sep, tag = ref.rpartition(":")
    # an exact version, not `latest` and not a floating major line such as `7-alpine`
    return bool(sep) and "/" not in tag and tag != "latest" and re.search(r"\d+\.\d+", tag) is not None


# ------------------------------------------------------------------ compose: registry and images


def test_env_file_defines_every_variable_the_compose_file_uses() -> None:
    _, missing = _interpolated()
    assert not missing, f"used in docker-compose.yml without a default but not set in compose/.env: {sorted(missing)}"


def test_every_service_has_a_pinned_image_or_a_build() -> None:
    for name, svc in services().items():
        if is_built(svc):
            build = svc["build"]
            context = (COMPOSE_DIR / build["context"]).resolve()
            assert context == ROOT, f"{name}: builds from {context}, not the repository root"
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: Dockerfile missing"
        else:
            assert "image" in svc, f"{name}: neither image nor build"
            assert image_is_pinned(svc["image"]), f"{name}: image {svc['image']!r} is not pinned to a version"


def test_third_party_images_are_registered_in_the_env_file() -> None:
    raw = raw_compose()["services"]
    for name in infra_services():
        ref = raw[name]["image"]
        m = re.fullmatch(r"\$\{([A-Z0-9_]+_IMAGE)\}", ref)
        assert m, f"{name}: image {ref!r} should be a ${{..._IMAGE}} entry of compose/.env"
        assert m.group(1) in env_file(), f"{name}: {m.group(1)} missing from compose/.env"


def test_every_pulse_container_runs_the_one_image() -> None:
    built = {name: svc for name, svc in services().items() if is_built(svc)}
    assert MIGRATE in built
    images = {svc.get("image") for svc in built.values()}
    assert len(images) == 1, f"Pulse containers use several images: {images}"
    (image,) = images
    assert image is not None and image.startswith("pulse:"), image
    assert len({json.dumps(svc["build"], sort_keys=True) for svc in built.values()}) == 1


def test_pulse_services_are_exactly_the_registered_services() -> None:
    assert set(pulse_services()) == set(SERVICES)
    for name, svc in pulse_services().items():
        assert svc["command"] == ["run", name], f"{name}: command {svc['command']!r}"


# ------------------------------------------------------------------ compose: health, limits, logs


def test_every_long_running_service_has_a_healthcheck_and_a_memory_limit() -> None:
    for name, svc in long_running().items():
        assert has_healthcheck(svc), f"{name}: no healthcheck"
        assert memory_bytes(svc) > 0, f"{name}: no memory limit"


def test_one_shot_services_have_a_memory_limit_too() -> None:
    for name, svc in services().items():
        if is_one_shot(svc):
            assert memory_bytes(svc) > 0, f"{name}: no memory limit"


def test_every_service_logs_through_the_shared_anchor() -> None:
    anchor = compose().get("x-logging")
    assert anchor, "x-logging anchor missing"
    for name, svc in services().items():
        assert svc.get("logging") == anchor, f"{name}: logging is not the x-logging anchor"
    # no service spells out its own logging block: every use is the alias
    uses = re.findall(r"^\s+logging:(.*)$", COMPOSE_FILE.read_text(), flags=re.MULTILINE)
    assert uses and all(use.strip() == "*logging" for use in uses), uses


def test_pulse_services_probe_healthz_with_the_python_stdlib() -> None:
    for name, svc in pulse_services().items():
        test = " ".join(svc["healthcheck"]["test"])
        assert "urllib" in test and "/healthz" in test, f"{name}: healthcheck {test!r}"
        assert "curl" not in test and "wget" not in test, f"{name}: the slim image has no curl or wget"


def test_every_infra_service_keeps_its_data_in_a_declared_named_volume() -> None:
    declared = set(compose().get("volumes") or {})
    for name, svc in infra_services().items():
        named = [src for kind, src in map(volume_source, svc.get("volumes", [])) if kind == "volume"]
        assert named, f"{name}: no named volume"
    for name, svc in services().items():
        for kind, src in map(volume_source, svc.get("volumes", [])):
            if kind == "volume":
                assert src in declared, f"{name}: volume {src!r} not declared under top-level volumes"


def test_bind_mounted_files_exist() -> None:
    for name, svc in services().items():
        for kind, src in map(volume_source, svc.get("volumes", [])):
            if kind == "bind":
                assert (COMPOSE_DIR / src).exists(), f"{name}: bind mount source {src} does not exist"


# ------------------------------------------------------------------ compose: start-up order


def test_migrate_runs_once_after_postgres_is_healthy() -> None:
    migrate = services()[MIGRATE]
    assert migrate["command"] == ["migrate"]
    assert is_one_shot(migrate)
    assert depends_on(migrate).get("postgres") == HEALTHY
    env = migrate["environment"]
    admin = urlsplit(env["PULSE_MIGRATE_DATABASE_URL"])
    assert admin.hostname == "postgres" and admin.username == services()["postgres"]["environment"]["POSTGRES_USER"]
    assert admin.password == services()["postgres"]["environment"]["POSTGRES_PASSWORD"]


def test_migrate_sets_the_password_the_services_log_in_with() -> None:
    password = services()[MIGRATE]["environment"]["PULSE_DB_SERVICE_PASSWORD"]
    assert password
    for name, svc in pulse_services().items():
        url = urlsplit(svc["environment"]["PULSE_DATABASE_URL"])
        assert url.username == "pulse_service", f"{name}: services log in as pulse_service, not {url.username}"
        assert url.password == password, f"{name}: database password differs from what migrate sets"


def test_every_pulse_service_waits_for_migrate_and_its_healthy_infrastructure() -> None:
    infra = infra_services()
    for name, svc in pulse_services().items():
        deps = depends_on(svc)
        assert deps.get(MIGRATE) == COMPLETED, f"{name}: must wait for migrate to complete"
        others = {dep: cond for dep, cond in deps.items() if dep != MIGRATE}
        assert others, f"{name}: depends on no infrastructure"
        for dep, cond in others.items():
            assert dep in infra, f"{name}: depends on {dep}, which is not infrastructure"
            assert cond == HEALTHY, f"{name}: waits for {dep} with {cond}, not service_healthy"


def test_every_dependency_waits_for_health_or_completion() -> None:
    all_services = services()
    for name, svc in all_services.items():
        for dep, cond in depends_on(svc).items():
            assert dep in all_services, f"{name}: depends on unknown service {dep}"
            target = all_services[dep]
            if cond == COMPLETED:
                assert is_one_shot(target), f"{name}: waits for long-running {dep} to complete"
            else:
                assert cond == HEALTHY, f"{name}: waits for {dep} with {cond}"
                assert has_healthcheck(target), f"{name}: waits for {dep} to be healthy, but it has no healthcheck"


def test_the_dependency_graph_has_no_cycles() -> None:
    graph = {name: set(depends_on(svc)) for name, svc in services().items()}
    order: list[str] = []
    remaining = dict(graph)
    while remaining:
        ready = sorted(name for name, deps in remaining.items() if deps <= set(order))
        assert ready, f"dependency cycle among {sorted(remaining)}"
        order.extend(ready)
        for name in ready:
            del remaining[name]
    assert order.index("postgres") < order.index(MIGRATE) < min(order.index(n) for n in SERVICES)


# ------------------------------------------------------------------ compose: ports and configuration


def test_only_device_and_user_facing_services_publish_ports() -> None:
    published = {name: svc["ports"] for name, svc in services().items() if svc.get("ports")}
    assert set(published) == {"ui", "ingest", "mosquitto"}
    assert published["mosquitto"] == [f"{env_file()['MQTT_HOST_PORT']}:1883"]
    http_port = env_file()["PULSE_HTTP_PORT"]
    assert published["ui"] == [f"8080:{http_port}"]
    assert published["ingest"] == [f"8081:{http_port}"]


def test_pulse_containers_share_one_environment_in_dev_mode() -> None:
    shared = compose()["x-pulse-env"]
    assert set(shared) >= SHARED_ENV, f"x-pulse-env lacks {sorted(SHARED_ENV - set(shared))}"
    assert shared["PULSE_MODE"] == "DEV"
    for name, svc in pulse_services().items():
        assert svc["environment"] == shared, f"{name}: environment is not the x-pulse-env anchor"
    migrate_env = services()[MIGRATE]["environment"]
    assert {key: migrate_env[key] for key in shared} == shared


def test_shared_urls_point_at_compose_services() -> None:
    shared = compose()["x-pulse-env"]
    names = set(services())
    for var in ("PULSE_DATABASE_URL", "PULSE_REDIS_URL", "PULSE_MQTT_URL", "PULSE_INFLUXDB3_URL", "PULSE_KEYCLOAK_URL"):
        host = urlsplit(shared[var]).hostname
        assert host in names, f"{var} points at {host!r}, not a compose service"
    for broker in shared["PULSE_KAFKA_BROKERS"].split(","):
        assert broker.rsplit(":", 1)[0] in names, f"PULSE_KAFKA_BROKERS: {broker!r} is not a compose service"
    assert urlsplit(shared["PULSE_MQTT_URL"]).port == 1883
    mosquitto_conf = (COMPOSE_DIR / "mosquitto" / "mosquitto.conf").read_text()
    assert re.search(r"^listener 1883\b", mosquitto_conf, flags=re.MULTILINE)


def test_compose_environment_is_valid_in_dev_and_refused_in_prod() -> None:
    shared = compose()["x-pulse-env"]
    settings = load(CommonSettings, shared)
    assert str(settings.http_port) == env_file()["PULSE_HTTP_PORT"]
    with pytest.raises(ConfigError, match="PULSE_ADMIN_KEYS"):
        load(CommonSettings, {**shared, "PULSE_MODE": "PROD"})


def test_keycloak_realm_has_the_pulse_roles_client_and_tenant_claim() -> None:
    realm = json.loads((COMPOSE_DIR / "keycloak" / "pulse-realm.json").read_text())
    assert realm["realm"] == compose()["x-pulse-env"]["PULSE_KEYCLOAK_REALM"]
    assert {role["name"] for role in realm["roles"]["realm"]} >= REALM_ROLES
    (client,) = (c for c in realm["clients"] if c["clientId"] == "pulse-ui")
    assert client["publicClient"] is True and client["standardFlowEnabled"] is True
    assert client.get("implicitFlowEnabled") is not True
    assert any(uri.startswith("http://localhost:8080/") for uri in client["redirectUris"])
    tenant = [
        m
        for m in client["protocolMappers"]
        if m["protocolMapper"] == "oidc-usermodel-attribute-mapper" and m["config"]["user.attribute"] == "tenant_id"
    ]
    assert tenant, "no protocol mapper puts the tenant_id attribute into tokens"
    assert tenant[0]["config"]["claim.name"] == "tenant_id"
    assert tenant[0]["config"]["access.token.claim"] == "true"
    # Keycloak 24+ drops user attributes the user profile does not declare
    (provider,) = realm["components"]["org.keycloak.userprofile.UserProfileProvider"]
    profile = json.loads(provider["config"]["kc.user.profile.config"][0])
    declared = {attr["name"]: attr for attr in profile["attributes"]}
    assert "tenant_id" in declared
    assert "user" not in declared["tenant_id"]["permissions"]["edit"], "users must not change their own tenant"


# ------------------------------------------------------------------ Dockerfile


def dockerfile_instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if logical and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        instruction, _, args = logical.partition(" ")
        yield instruction.upper(), args.strip()
        logical = ""


@cache
def stages() -> list[list[tuple[str, str]]]:
    """Instructions per build stage; stage 0 holds what precedes the first FROM (global ARGs)."""
    result: list[list[tuple[str, str]]] = [[]]
    for instruction, args in dockerfile_instructions(DOCKERFILE.read_text()):
        if instruction == "FROM":
            result.append([])
        result[-1].append((instruction, args))
    return result


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def global_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for instruction, value in stages()[0]:
        if instruction == "ARG" and "=" in value:
            key, _, default = value.partition("=")
            args[key] = default
    return args


def _flags_and_words(args: str) -> tuple[list[str], list[str]]:
    words = shlex.split(args)
    return [w for w in words if w.startswith("--")], [w for w in words if not w.startswith("--")]


def test_image_builds_in_stages_from_slim_python() -> None:
    froms = [args for stage in stages()[1:] for instruction, args in stage if instruction == "FROM"]
    assert len(froms) >= 2, "expected a multi-stage build"
    for args in froms:
        _, words = _flags_and_words(args)
        image = re.sub(r"\$\{(\w+)\}", lambda m: global_args().get(m.group(1), m.group(0)), words[0])
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image), f"base image {image!r} is not python:3.11-slim"


def test_image_runs_as_a_non_root_user() -> None:
    users = [args for instruction, args in final_stage() if instruction == "USER"]
    assert users, "the final stage sets no USER (runs as root)"
    user = users[-1].split(":", 1)[0]
    assert user not in {"root", "0"}, f"final USER is {users[-1]}"
    assert user == "10001"


def test_image_healthcheck_probes_healthz_with_the_stdlib() -> None:
    checks = [args for instruction, args in final_stage() if instruction == "HEALTHCHECK"]
    assert checks, "no HEALTHCHECK in the final stage"
    check = checks[-1]
    assert not check.upper().startswith("NONE")
    assert "urllib" in check and "/healthz" in check and "PULSE_HTTP_PORT" in check, check


def test_image_entrypoint_is_the_pulse_command() -> None:
    entrypoints = [json.loads(args) for instruction, args in final_stage() if instruction == "ENTRYPOINT"]
    assert entrypoints and entrypoints[-1] == ["pulse"]
    cmds = [json.loads(args) for instruction, args in final_stage() if instruction == "CMD"]
    assert cmds and cmds[-1][0] == "run" and cmds[-1][1] in SERVICES


def test_image_sets_python_runtime_environment() -> None:
    env = " ".join(args for instruction, args in final_stage() if instruction == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env


def test_image_installs_the_pinned_runtime_dependencies_without_dev_extras() -> None:
    runs = [args for stage in stages() for instruction, args in stage if instruction == "RUN"]
    assert any(re.search(r"pip install (.* )?-c constraints\.txt \.(\s|$)", run) for run in runs), runs
    text = DOCKERFILE.read_text()
    assert "[dev]" not in text and "[local]" not in text


def test_image_copies_sources_that_exist_and_are_not_dockerignored() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied: set[str] = set()
    for stage in stages():
        for instruction, args in stage:
            if instruction != "COPY":
                continue
            flags, words = _flags_and_words(args)
            if any(flag.startswith("--from") for flag in flags):
                continue
            for source in words[:-1]:
                name = source.rstrip("/")
                copied.add(name)
                assert name not in ignored, f"COPY {source}: excluded by .dockerignore"
                path = ROOT / name
                assert path.exists(), f"COPY {source}: missing from the build context"
                if path.is_dir():
                    # git keeps no empty directories: a clean clone would not have it
                    assert any(p.is_file() for p in path.rglob("*")), f"COPY {source}: directory holds no file"
    assert copied >= {"services", "db", "simulator", "pyproject.toml", "README.md", "constraints.txt"}


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip()}
    for entry in (".git", ".venv", ".cache", "bench/results", "**/__pycache__"):
        assert entry in ignored, f".dockerignore lacks {entry}"
