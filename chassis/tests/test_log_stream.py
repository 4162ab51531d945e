from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from service_chassis.log_stream import flush_logs, log_stream


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    reading, writing = os.pipe()
    os.set_blocking(reading, False)
    yield reading, writing
    os.close(reading)
    os.close(writing)


def pending(reading: int) -> bytes:
    try:
        return os.read(reading, 65536)
    except BlockingIOError:
        return b""


def test_a_write_through_stdout_gets_a_buffered_stream_on_its_descriptor(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    reading, writing = pipe
    # stdout as PYTHONUNBUFFERED=1 makes it (set here: pytest sets its own before each test).
    stdout = io.TextIOWrapper(io.FileIO(writing, "w", closefd=False), write_through=True)
    monkeypatch.setattr(sys, "stdout", stdout)
    stream = log_stream()
    assert stream is not sys.stdout
    assert stream is log_stream()  # one per descriptor
    stream.write('{"event":"request"}\n')
    assert pending(reading) == b""  # held until the logs flush
    flush_logs()
    assert pending(reading) == b'{"event":"request"}\n'


def test_a_buffered_stdout_and_a_given_stream_are_used_as_they_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given = io.StringIO()
    assert log_stream(given) is given
    buffered = io.TextIOWrapper(io.BytesIO())
    monkeypatch.setattr(sys, "stdout", buffered)
    assert log_stream() is buffered


def test_a_stdout_without_a_descriptor_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    captured = io.TextIOWrapper(io.BytesIO(), write_through=True)
    captured.fileno = lambda: (_ for _ in ()).throw(io.UnsupportedOperation())  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdout", captured)
    assert log_stream() is captured


def test_lines_held_in_the_buffer_are_written_when_the_process_exits() -> None:
    program = textwrap.dedent(
        """
        from service_chassis.logs import configure_logging
        from service_chassis.access_log import access_logger
        configure_logging(service="exiting", level="INFO")
        for number in range(3):
            access_logger().info("request", number=number)
        """
    )
    finished = subprocess.run(
        [sys.executable, "-c", program],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    lines = finished.stdout.splitlines()
    assert [line.count('"event":"request"') for line in lines] == [1, 1, 1]
