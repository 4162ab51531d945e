"""Resilience for outbound calls: deadline, retry, circuit breaker, bulkhead.

The primitives (`clock`, `_window`, `breaker`, `bulkhead`, `retry`, `deadline`) are pure: no
I/O, no HTTP client, time and randomness injectable. The rest wires them into the service:
`settings` (per-downstream knobs), `client` (the resilient client around httpx), `errors`
(problem details for the service's caller) and `metrics` (Prometheus series).
"""
