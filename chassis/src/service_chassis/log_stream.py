"""The stream the logs are written to: stdout, buffered even when Python's is not.

Containers usually run Python with ``PYTHONUNBUFFERED=1`` (the baked Dockerfile does), which
makes ``sys.stdout`` write through: every write is a system call. The logs decide themselves
when a line must go out: every line is flushed at once except the access log's, which is
flushed within 50 ms (access_log.py), so that a busy service makes one write for many
requests. Over a write-through stdout that batching is lost, so the logs get a buffered
stream on the same file descriptor instead, flushed at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import sys
from typing import TextIO

BUFFER_BYTES = 64 * 1024

# One buffered stream per descriptor, however often logging is configured.
_buffered: dict[int, io.TextIOWrapper] = {}


def log_stream(stream: TextIO | None = None) -> TextIO:
    """``stream`` if given; else stdout, or a buffered stream on its descriptor when stdout
    writes through (a stdout without a descriptor, as a test's capture, is used as it is)."""
    if stream is not None:
        return stream
    stdout = sys.stdout
    if not getattr(stdout, "write_through", False):
        return stdout
    try:
        descriptor = stdout.fileno()
    except (OSError, ValueError):
        return stdout
    buffered = _buffered.get(descriptor)
    if buffered is None or buffered.closed:
        buffered = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(descriptor, "w", closefd=False), BUFFER_BYTES),
            encoding=stdout.encoding,
            errors=stdout.errors,
        )
        atexit.register(_flush, buffered)
        _buffered[descriptor] = buffered
    return buffered


def flush_logs() -> None:
    """Write out what the log streams hold (before ``os._exit``, which skips ``atexit``)."""
    for stream in (*_buffered.values(), sys.stdout):
        _flush(stream)


def _flush(stream: TextIO) -> None:
    with contextlib.suppress(OSError, ValueError):  # closed or gone: nothing more to write
        stream.flush()
