from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Received:
    """A message as a test reads it back from a destination."""

    body: bytes
    headers: dict[str, str]
