"""An outage is logged when it starts, summarised at growing intervals, and closed once."""

from __future__ import annotations

from structlog.testing import capture_logs

from service_chassis.outages import OutageLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_hour_of_retries_every_30_s_makes_a_handful_of_lines() -> None:
    clock = Clock()
    outage = OutageLog("consul call", clock=clock)
    with capture_logs() as logs:
        for _ in range(120):  # one hour of failures, 30 s apart
            outage.failed(error="connection refused")
            clock.now += 30
        outage.recovered()
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [w["event"] for w in warnings[:3]] == ["consul call failed"] * 3
    summaries = warnings[3:]
    assert all(w["event"] == "consul call still failing" for w in summaries)
    # The first summary a minute in, then 2, 4, 8 and 16 minutes apart: 5 lines, not 117.
    assert [w["failing_for_seconds"] for w in summaries] == [90, 210, 450, 930, 1890]
    [ended] = [entry for entry in logs if entry["log_level"] == "info"]
    assert ended["event"] == "consul call works again"
    assert ended["failed_for_seconds"] == 3600
    assert ended["attempts"] == 120


def test_a_new_outage_after_recovery_starts_afresh() -> None:
    clock = Clock()
    outage = OutageLog("broker connection", clock=clock)
    with capture_logs() as logs:
        outage.recovered()  # nothing to say: it never failed
        outage.failed()
        outage.recovered()
        clock.now += 5
        outage.failed()
    assert [entry["event"] for entry in logs] == [
        "broker connection failed",
        "broker connection works again",
        "broker connection failed",
    ]
    assert logs[-1]["attempts"] == 1
