"""Reading frozen config dataclasses back from JSON-like dictionaries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

__all__ = ["check_known_fields"]


def check_known_fields(cls: type, data: Mapping[str, Any], label: str) -> None:
    """Raise ``ValueError`` naming any key of ``data`` that is not a field of dataclass ``cls``."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {label} fields {unknown}; known: {sorted(known)}")
