"""Counts over a sliding time window, kept in fixed-width buckets.

A call at time t lands in bucket floor(t / bucket_width). The window holds the newest `buckets`
buckets, so it covers between (buckets - 1) and `buckets` bucket widths of history. Totals are
kept incrementally: adding is O(1); moving the window forward clears at most `buckets` stale
buckets, and only after an idle period.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MAX_BUCKETS = 3600


def bucket_count(window: float, bucket_width: float, *, what: str = "window") -> int:
    """Number of buckets in `window`; raise ValueError unless it is a whole, sane number."""
    if not (math.isfinite(bucket_width) and bucket_width > 0):
        raise ValueError(f"{what} bucket width must be a positive number of seconds")
    if not (math.isfinite(window) and window > 0):
        raise ValueError(f"{what} must be a positive number of seconds, got {window!r}")
    count = round(window / bucket_width)
    if count < 1 or abs(count * bucket_width - window) > 1e-9 * window:
        raise ValueError(
            f"{what} ({window}s) must be a whole multiple of its bucket width ({bucket_width}s)"
        )
    if count > MAX_BUCKETS:
        raise ValueError(f"{what} has {count} buckets; at most {MAX_BUCKETS} are allowed")
    return count


class SlidingWindow:
    """Per-field integer totals over the newest `buckets` time buckets."""

    def __init__(self, *, buckets: int, bucket_width: float, fields: int) -> None:
        self._size = buckets
        self._width = bucket_width
        self._fields = fields
        self._counts = [[0] * fields for _ in range(buckets)]
        self._totals = [0] * fields
        self._epoch: int | None = None  # index of the newest bucket seen

    def add(self, now: float, deltas: Sequence[int]) -> None:
        epoch = self._advance(now)
        bucket = self._counts[epoch % self._size]
        for i, delta in enumerate(deltas):
            bucket[i] += delta
            self._totals[i] += delta

    def totals(self, now: float) -> tuple[int, ...]:
        self._advance(now)
        return tuple(self._totals)

    def clear(self) -> None:
        for bucket in self._counts:
            bucket[:] = [0] * self._fields
        self._totals = [0] * self._fields
        self._epoch = None

    def _advance(self, now: float) -> int:
        epoch = math.floor(now / self._width)
        if self._epoch is None:
            self._epoch = epoch
        elif epoch > self._epoch:
            if epoch - self._epoch >= self._size:
                self.clear()  # idle for a whole window: everything aged out
            else:
                for stale in range(self._epoch + 1, epoch + 1):
                    bucket = self._counts[stale % self._size]
                    for i, count in enumerate(bucket):
                        self._totals[i] -= count
                    bucket[:] = [0] * self._fields
            self._epoch = epoch
        # A clock reading older than the newest bucket (never, with a monotonic clock) is
        # counted in the newest bucket rather than corrupting the ring.
        return self._epoch
