"""The baked services' copy of the Gateway API's HTTPRoute schema is the Gateway API's own.

The module sigs.k8s.io/gateway-api comes from the Go module proxy at the release named in
tests/stack/gateway_api.py; its standard-channel CRD holds the schema.
"""

from __future__ import annotations

from tests.stack.gateway_api import (
    BAKED_COPY,
    BAKED_SCHEMAS,
    GATEWAY_API_VERSION,
    crd,
    httproute_v1_schema,
    serialised,
)


def test_the_crd_is_the_standard_channel_of_the_pinned_release() -> None:
    annotations = crd()["metadata"]["annotations"]
    assert annotations["gateway.networking.k8s.io/bundle-version"] == GATEWAY_API_VERSION
    assert annotations["gateway.networking.k8s.io/channel"] == "standard"


def test_the_baked_copy_is_the_modules_v1_httproute_schema() -> None:
    assert sorted(p.name for p in BAKED_SCHEMAS.glob("httproute-*.json")) == [BAKED_COPY.name]
    assert BAKED_COPY.read_text() == serialised(httproute_v1_schema()), (
        "run .venv/bin/python -m tests.stack.gateway_api to write it again"
    )


def test_the_copy_keeps_what_validation_needs() -> None:
    """Only prose is left out: types, enums, limits and the CEL rules stay."""
    text = BAKED_COPY.read_text()
    for kept in ('"enum"', '"maxItems"', '"x-kubernetes-validations"', '"ReplacePrefixMatch"'):
        assert kept in text, kept
    assert '"description"' not in text
