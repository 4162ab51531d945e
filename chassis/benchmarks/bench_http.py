"""HTTP overhead benchmark: a service on the chassis against a bare FastAPI app, side by side.

Both run under uvicorn with the same settings (one worker, same loop and HTTP parser) and serve
the same API, measured on ``GET /items/{item_id}``: the service is the chassis's sample service
(``tests/sample/``, wired as a bake is), the bare app is FastAPI with the same example routers,
in the same order, and nothing else. The service runs with everything on (tracing sampled at
100 % and exported over OTLP/HTTP to a receiver process, RED metrics with exemplars, the JSON
access log written to /dev/null), and in variants that show what each part costs: sampled at 10 %
(``parentbased_traceidratio`` 0.1), access log off, spans not exported, and with the server
span's connection attributes (``TRACE_CONNECTION_ATTRIBUTES``). wrk drives each in alternating
rounds; the medians, the absolute rates and the ratios are printed, with the targets: at least
0.70 of bare FastAPI's throughput and at most 1.5 times its p99 latency with everything on.

Every round starts a fresh server process per variant (warmed up, measured, stopped): on a
shared or small machine one process can run 15-30 % slower than another for minutes, and with
one process per variant for the whole run that slowness would land on one variant in every
round, which alternating cannot cancel. Started afresh, it spreads over all of them.
``--granian`` adds bare FastAPI and the service (everything on) served by Granian
(``bench_apps.py``'s factories; one worker, uvloop, HTTP/1.1), to compare the servers: the CPU
per request then counts Granian's worker process and its threads. Granian is not a dependency
of the chassis: install it to compare (``uv pip install granian==2.8.9``).
Needs ``wrk`` (Debian: apt-get install wrk).

    cd chassis && ../.venv/bin/python benchmarks/bench_http.py [--rounds 3] [--seconds 10] \
        [--granian]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from bench_support import free_port, running_sink  # scripts/ is on sys.path when run

ROOT = Path(__file__).resolve().parents[1]
# The sample service (tests/sample/), built on the chassis exactly as a bake is.
PACKAGE = "tests.sample"

# The baseline: bare FastAPI serving the same API as the service (its example's routers, in
# the order the service installs them), nothing else: the difference is the chassis.
BARE_APP = textwrap.dedent(
    """
    import os
    import uvicorn
    from bench_apps import bare

    uvicorn.run(bare(), host="127.0.0.1", port=int(os.environ["HTTP_PORT"]),
                log_config=None, access_log=False, server_header=False)
    """
)
# --granian: both apps under Granian (one worker, uvloop, HTTP/1.1), to compare servers.
GRANIAN_VERSION = "2.8.9"


EVERYTHING_ON = "service, everything on"
VARIANTS = (
    "bare FastAPI",
    EVERYTHING_ON,
    "service, sampled at 10 %",
    "service, access log off",
    "service, spans not exported",
    "service, + connection attrs",
)
GRANIAN_VARIANTS = ("bare FastAPI, Granian", "service, Granian")
TARGET_RATIO = 0.70
TARGET_P99 = 1.5


@dataclass
class Run:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    # The server process's CPU time per request: what the throughput would follow on a
    # core of its own, and steadier than throughput on a machine shared with other work.
    cpu_us: float = 0.0


def wait_ready(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )


def _millis(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise SystemExit(f"unexpected latency figure from wrk: {text!r}")
    number, unit = match.groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(url: str, seconds: int, connections: int) -> Run:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _millis(re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE).group(1))  # type: ignore[union-attr]
    p99 = _millis(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in output or "Socket errors" in output:
        raise SystemExit(f"errors during the run:\n{output}")
    return Run(rps, p50, p99)


def summary(runs: list[Run]) -> Run:
    return Run(
        statistics.median(r.requests_per_second for r in runs),
        statistics.median(r.p50_ms for r in runs),
        statistics.median(r.p99_ms for r in runs),
        statistics.median(r.cpu_us for r in runs),
    )


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its children so far (Linux /proc; 0
    elsewhere): Granian serves from a worker process it starts."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0.0
    children = []
    for task in tasks:
        with contextlib.suppress(OSError):
            children += (task / "children").read_text().split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(cpu_seconds(int(child)) for child in children)


def measured(url: str, pid: int, seconds: int, connections: int) -> Run:
    before = cpu_seconds(pid)
    run = wrk(url, seconds, connections)
    requests = run.requests_per_second * seconds
    run.cpu_us = (cpu_seconds(pid) - before) / requests * 1e6 if requests else 0.0
    return run


def service_env(port: int, **overrides: str) -> dict[str, str]:
    return {
        "PYTHONPATH": str(ROOT / "src"),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "OTEL_TRACES_SAMPLER": "always_on",
        "ACCESS_LOG": "true",
        "LOG_LEVEL": "INFO",
        # The HTTP path alone: a broker, if this bake has one, is not part of the measure.
        "MESSAGING_ENABLED": "false",
        **overrides,
    }


def _path() -> str:
    """The chassis and the benchmarks' own modules (bench_apps), for a server process."""
    return os.pathsep.join((str(ROOT / "src"), str(ROOT / "benchmarks"), str(ROOT)))


def _exported(sink_port: int) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
    }


def server_command(name: str, port: int, sink_port: int) -> tuple[list[str], dict[str, str]]:
    """How to start the server of one variant on ``port``, exporting to the sink's."""
    if name == "bare FastAPI":
        env = {"HTTP_PORT": str(port), "PYTHONPATH": _path()}
        return [sys.executable, "-c", BARE_APP], env
    if name in GRANIAN_VARIANTS:
        factory = "bare" if name == "bare FastAPI, Granian" else "service"
        command = [
            *(sys.executable, "-m", "granian", "--interface", "asgi", "--factory"),
            *(f"bench_apps:{factory}", "--host", "127.0.0.1", "--port", str(port)),
            *("--workers", "1", "--loop", "uvloop", "--http", "1", "--no-ws"),
        ]
        return command, {**service_env(port, **_exported(sink_port)), "PYTHONPATH": _path()}
    exported = _exported(sink_port)
    extra = {
        EVERYTHING_ON: {},
        "service, sampled at 10 %": {
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        },
        "service, access log off": {"ACCESS_LOG": "false"},
        "service, spans not exported": {"OTEL_TRACES_EXPORTER": "none"},
        "service, + connection attrs": {"TRACE_CONNECTION_ATTRIBUTES": "true"},
    }[name]
    return [sys.executable, "-m", PACKAGE], service_env(port, **{**exported, **extra})


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure_fresh(name: str, sink_port: int, seconds: int, connections: int) -> Run:
    """Start the variant's server, warm it up, measure it, stop it."""
    port = free_port()
    server = start(*server_command(name, port, sink_port))
    try:
        url = f"http://127.0.0.1:{port}/items/1"
        wait_ready(url)
        wrk(url, 2, connections)  # warm-up
        return measured(url, server.pid, seconds, connections)
    finally:
        stop(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--granian",
        action="store_true",
        help="also serve bare FastAPI and the service (everything on) under Granian",
    )
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (or brew install wrk)")
    variants = VARIANTS
    if options.granian:
        if importlib.util.find_spec("granian") is None:
            raise SystemExit(f"--granian needs Granian: uv pip install granian=={GRANIAN_VERSION}")
        variants += GRANIAN_VARIANTS

    runs: dict[str, list[Run]] = {name: [] for name in variants}
    with running_sink() as sink_port:
        for round_number in range(1, options.rounds + 1):
            # Each round starts one variant later, so none is always first after a pause.
            shift = (round_number - 1) % len(variants)
            for name in variants[shift:] + variants[:shift]:
                runs[name].append(
                    measure_fresh(name, sink_port, options.seconds, options.connections)
                )
            figures = ", ".join(f"{runs[name][-1].requests_per_second:.0f}" for name in variants)
            ratio = (
                runs[EVERYTHING_ON][-1].requests_per_second
                / runs["bare FastAPI"][-1].requests_per_second
            )
            print(
                f"round {round_number}: {figures} req/s; everything on {ratio:.2f} of bare",
                flush=True,
            )

    results = {name: summary(name_runs) for name, name_runs in runs.items()}
    bare = results["bare FastAPI"]
    print()
    header = f"{'':30}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}{'p99 x':>8}"
    print(f"{header}{'CPU us/req':>12}{'CPU ratio':>11}")
    for name, run in results.items():
        ratio = run.requests_per_second / bare.requests_per_second
        latency = f"{run.p50_ms:9.2f}{run.p99_ms:9.2f}"
        p99 = run.p99_ms / bare.p99_ms
        cpu_ratio = bare.cpu_us / run.cpu_us if run.cpu_us else 0.0
        print(
            f"{name:30}{run.requests_per_second:9.0f}{latency}{ratio:8.2f}{p99:8.2f}"
            f"{run.cpu_us:12.0f}{cpu_ratio:11.2f}"
        )
    print(
        f"\nmedians of {options.rounds} rounds; ratio = throughput / bare FastAPI's; "
        "CPU ratio = bare FastAPI's CPU per request / the variant's"
    )
    per_round = [
        service_run.requests_per_second / bare_run.requests_per_second
        for service_run, bare_run in zip(runs[EVERYTHING_ON], runs["bare FastAPI"], strict=True)
    ]
    print(f"everything on, round by round: {', '.join(f'{r:.2f}' for r in per_round)} of bare")
    if options.granian:
        granian, bare_granian = results["service, Granian"], results[GRANIAN_VARIANTS[0]]
        uvicorn = results[EVERYTHING_ON]
        rate = granian.requests_per_second
        print(
            f"under Granian: the service at {rate:.0f} req/s, "
            f"{rate / bare_granian.requests_per_second:.2f} of bare FastAPI under Granian, "
            f"{rate / uvicorn.requests_per_second:.2f} x the service under uvicorn; "
            f"{granian.cpu_us:.0f} us of CPU per request "
            f"(under uvicorn {uvicorn.cpu_us:.0f})"
        )
    on = results[EVERYTHING_ON]
    ratio, p99 = on.requests_per_second / bare.requests_per_second, on.p99_ms / bare.p99_ms
    for what, met in (
        (
            f"throughput {ratio:.2f} of bare FastAPI (target >= {TARGET_RATIO})",
            ratio >= TARGET_RATIO,
        ),
        (f"p99 {p99:.2f} x bare FastAPI's (target <= {TARGET_P99})", p99 <= TARGET_P99),
    ):
        print(f"everything on: {what}: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
