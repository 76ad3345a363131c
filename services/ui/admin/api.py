"""Conventions of the admin API: typed JSON bodies, paging, errors as values with a code."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse

__all__ = [
    "DEVICE_ID_PATTERN",
    "MAX_BODY_BYTES",
    "TENANT_ID_PATTERN",
    "ActivationTtl",
    "ApiError",
    "DeviceId",
    "Metadata",
    "Name",
    "Page",
    "SiteId",
    "TenantId",
    "is_device_id",
    "is_tenant_id",
    "iso",
    "json_response",
    "page",
    "query_choice",
    "read_json",
]

MAX_BODY_BYTES = 64 * 1024

TENANT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # = services.common.db.validate_tenant_id
# device and site ids travel in MQTT topics and URLs: no '/', '+', '#', spaces or control characters
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_TENANT_ID = re.compile(TENANT_ID_PATTERN)
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)

TenantId = Annotated[str, msgspec.Meta(pattern=TENANT_ID_PATTERN, description="1-64 of A-Z a-z 0-9 _ . -")]
DeviceId = Annotated[str, msgspec.Meta(pattern=DEVICE_ID_PATTERN, description="1-128 of A-Z a-z 0-9 _ . : -")]
SiteId = DeviceId
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Metadata = dict[str, Any]
ActivationTtl = Annotated[int, msgspec.Meta(ge=60, le=7 * 86400)]

T = TypeVar("T")


class ApiError(Exception):
    """An expected failure: answered as {"error": code, "detail": detail} with `status`."""

    def __init__(self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


def is_tenant_id(value: str) -> bool:
    return bool(_TENANT_ID.match(value))


def is_device_id(value: str) -> bool:
    return bool(_DEVICE_ID.match(value))


async def read_json(request: Request, into: type[T], *, allow_empty: bool = False) -> T:
    """Decode the request body into `into`, or raise ApiError 400/413 saying what is wrong."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"request body over {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"request body over {MAX_BODY_BYTES} bytes")
    if allow_empty and not body.strip():
        body = bytearray(b"{}")
    try:
        return msgspec.json.decode(bytes(body), type=into)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_request", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, "invalid_json", str(exc)) from None


class Page(msgspec.Struct, frozen=True):
    limit: int
    offset: int


def page(request: Request, *, default: int = 50, maximum: int = 500) -> Page:
    """limit (1..maximum, default `default`) and offset (>= 0) from the query string."""
    values = {}
    for name, low, high, fallback in (("limit", 1, maximum, default), ("offset", 0, None, 0)):
        raw = request.query_params.get(name)
        if raw is None:
            values[name] = fallback
            continue
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise ApiError(400, "invalid_query", f"{name} must be an integer {bound}, got {raw!r}")
        values[name] = value
    return Page(limit=values["limit"], offset=values["offset"])


def query_choice(request: Request, name: str, choices: type[Any] | None = None) -> str | None:
    """An optional query filter; with `choices` (a StrEnum) the value must be one of its members."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if choices is not None and raw not in {m.value for m in choices}:
        allowed = "|".join(m.value for m in choices)
        raise ApiError(400, "invalid_query", f"{name} must be one of {allowed}, got {raw!r}")
    return raw


def iso(value: datetime | None) -> str | None:
    """UTC ISO-8601 with a Z, like every timestamp on Pulse's wire."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def json_response(body: Any, status: int = 200, *, secret: bool = False) -> JSONResponse:
    """A JSON answer; `secret` ones (codes, tokens) must not be kept by any cache."""
    headers = {"Cache-Control": "no-store"} if secret else None
    return JSONResponse(body, status_code=status, headers=headers)
