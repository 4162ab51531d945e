"""Helpers for a service's own tests, all real: loopback HTTP servers (a recording downstream,
the service as a process), an OTLP receiver, brokers (``brokers.broker_under_test``) and a
TCP proxy to cut a connection. Needs the ``testing`` extra; each broker needs its client."""
