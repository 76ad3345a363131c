"""HTTP intake: one message per request, or a batch; the same checks as MQTT (core.Ingestor)."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from services.common.http import error_response
from services.ingest.core import Ingestor
from services.ingest.reasons import Reason, Rejected

__all__ = ["http_routes"]

log = logging.getLogger("pulse.ingest.http")


class _Batch(msgspec.Struct):
    messages: list[msgspec.Raw]  # each message is checked on its own, from its own bytes


_batch_decoder = msgspec.json.Decoder(_Batch)


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None once it exceeds `limit` bytes (never buffers more than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _rejection(rej: Rejected, rate_per_s: float) -> Response:
    response = error_response(rej.reason.http_status, rej.reason.value, rej.detail)
    if rej.reason is Reason.RATE_LIMITED:
        response.headers["Retry-After"] = str(max(1, math.ceil(1 / rate_per_s)))
    return response


def _is_json(body: bytes) -> bool:
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError:
        return False
    return True


def _device_id_of(raw: msgspec.Raw) -> str | None:
    """The device_id of a refused batch message, if it has a readable one (for the report)."""
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    device_id = value.get("device_id") if isinstance(value, dict) else None
    return device_id if isinstance(device_id, str) else None


def http_routes(ingestor: Ingestor, *, max_batch: int, accept_timeout_s: float) -> list[BaseRoute]:
    async def unavailable() -> Response:
        return error_response(503, "UNAVAILABLE", "the message could not be queued in time; retry")

    async def single(request: Request) -> Response:
        tenant_id = request.path_params["tenant_id"]
        device_id = request.path_params["device_id"]
        msg_type = request.path_params["msg_type"]
        policy = ingestor.settings.for_tenant(tenant_id)
        body = await _read_limited(request, policy.max_payload_bytes)
        if body is None:
            return _rejection(ingestor.refuse_oversize("http", tenant_id, device_id, msg_type), policy.rate_per_s)
        try:
            obs, published = await ingestor.from_http(
                tenant_id, device_id, msg_type, body, request.headers.get("x-provision-token")
            )
        except Rejected as rej:
            return _rejection(rej, policy.rate_per_s)
        try:
            await asyncio.wait_for(asyncio.shield(published), accept_timeout_s)
        except TimeoutError:
            return await unavailable()
        return JSONResponse({"status": "accepted", "device_id": device_id, "seq": obs.seq}, status_code=202)

    async def batch(request: Request) -> Response:
        limit = max_batch * ingestor.settings.default.max_payload_bytes
        body = await _read_limited(request, limit)
        if body is None:
            return error_response(413, Reason.PAYLOAD_TOO_LARGE.value, f"batch body over {limit} bytes")
        try:
            messages = _batch_decoder.decode(body).messages
        except msgspec.DecodeError as exc:
            reason = Reason.MALFORMED_JSON if not _is_json(body) else Reason.SCHEMA_INVALID
            return error_response(400, reason.value, f'expected {{"messages": [...]}}: {exc}')
        if len(messages) > max_batch:
            return error_response(413, Reason.PAYLOAD_TOO_LARGE.value, f"at most {max_batch} messages per batch")
        results: list[dict[str, Any]] = []
        waits: list[asyncio.Future[None]] = []
        for index, item in enumerate(messages):
            try:
                obs, published = await ingestor.from_batch_item(bytes(item))
            except Rejected as rej:
                device_id = _device_id_of(item)
                results.append(
                    {
                        "index": index,
                        "status": "rejected",
                        "reason": rej.reason.value,
                        "detail": rej.detail,
                        "device_id": device_id,
                    }
                )
                continue
            results.append({"index": index, "status": "accepted", "reason": None, "device_id": obs.device_id})
            waits.append(published)
        if waits:
            try:
                await asyncio.wait_for(asyncio.gather(*(asyncio.shield(w) for w in set(waits))), accept_timeout_s)
            except TimeoutError:
                return await unavailable()
        accepted = sum(1 for r in results if r["status"] == "accepted")
        body_out = {"accepted": accepted, "rejected": len(results) - accepted, "results": results}
        return JSONResponse(body_out, status_code=202 if accepted else 400)

    return [
        Route("/ingest/v1/batch", batch, methods=["POST"]),
        Route("/ingest/v1/tenant/{tenant_id}/device/{device_id}/{msg_type}", single, methods=["POST"]),
    ]
