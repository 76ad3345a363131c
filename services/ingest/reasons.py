"""Why a device message was refused: one reason code per check, with its HTTP status."""

from __future__ import annotations

import enum

__all__ = ["Reason", "Rejected"]


class Reason(enum.StrEnum):
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    BAD_TOPIC_FORMAT = "BAD_TOPIC_FORMAT"
    INVALID_MSG_TYPE = "INVALID_MSG_TYPE"
    MALFORMED_JSON = "MALFORMED_JSON"
    SCHEMA_INVALID = "SCHEMA_INVALID"
    TENANT_MISMATCH = "TENANT_MISMATCH"
    MISSING_SITE_ID = "MISSING_SITE_ID"
    RATE_LIMITED = "RATE_LIMITED"
    TOKEN_MISSING = "TOKEN_MISSING"  # noqa: S105 - a reason code, not a secret
    UNREGISTERED_DEVICE = "UNREGISTERED_DEVICE"
    DEVICE_REVOKED = "DEVICE_REVOKED"
    TOKEN_INVALID = "TOKEN_INVALID"  # noqa: S105
    SITE_MISMATCH = "SITE_MISMATCH"
    TS_OUT_OF_RANGE = "TS_OUT_OF_RANGE"

    @property
    def http_status(self) -> int:
        return _STATUS.get(self, 400)


_STATUS = {
    Reason.PAYLOAD_TOO_LARGE: 413,
    Reason.RATE_LIMITED: 429,
    Reason.TOKEN_MISSING: 401,
    Reason.TOKEN_INVALID: 401,
    Reason.UNREGISTERED_DEVICE: 403,
    Reason.DEVICE_REVOKED: 403,
    Reason.TENANT_MISMATCH: 403,
    Reason.SITE_MISMATCH: 403,
}


class Rejected(Exception):
    """A device message refused for `reason`; `detail` is safe to show the device."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
