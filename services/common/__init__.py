"""Shared code for Pulse services: only what two or more services use."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
