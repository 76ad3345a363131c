"""Device credentials: high-entropy tokens and one-time activation codes, stored only as hashes.

Both values are random (256 and 60 bits), so a plain SHA-256 is a safe one-way store: there is
nothing to brute-force from a dictionary, and lookups by hash stay a single index probe.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["hash_secret", "new_activation_code", "new_device_token", "secrets_equal"]

_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed by people


def new_device_token() -> str:
    return "pdt_" + secrets.token_urlsafe(32)


def new_activation_code() -> str:
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def hash_secret(value: str) -> str:
    """The stored form of a token or activation code (activation codes ignore case and dashes)."""
    if not value.startswith("pdt_"):
        value = value.replace("-", "").replace(" ", "").upper()
    return hashlib.sha256(value.encode()).hexdigest()


def secrets_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets or hashes."""
    return hmac.compare_digest(a.encode(), b.encode())
