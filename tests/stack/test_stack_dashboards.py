"""Grafana provisioning and dashboards, checked without a Grafana."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

REPO = Path(__file__).resolve().parents[2]
PROVISIONING = REPO / "observability" / "grafana" / "provisioning"
METRICS_DOC = REPO / "docs" / "metrics.md"

# Series Prometheus makes itself rather than scraping them.
PROMETHEUS_SERIES = {"up"}
GRAFANA_BUILTIN_DATASOURCE = "-- Grafana --"


# --- PromQL metric names --------------------------------------------------------------

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (a small scanner, enough for dashboards)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range windows
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end() :].lstrip()[:1]
        if before.isdigit() or before == "." or after == "(":  # 1e3, 0.5e-3, function calls
            continue
        if match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def test_metric_name_scanner() -> None:
    assert metric_names(
        "histogram_quantile(0.99, sum by (le, http_route) "
        '(rate(a_bucket{x=~"5..", y!="rate(b)"}[$__rate_interval])))'
        " / ignoring(le) group_left(z) (b_total offset 5m or vector(0)) > bool 1e3 and time() - c"
    ) == {"a_bucket", "b_total", "c"}


def _series_names(registry: CollectorRegistry) -> set[str]:
    """Every series name a registry's families can produce, labelled children or not."""
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "info": ("_info",),
        "histogram": ("_bucket", "_count", "_sum"),
    }
    return {
        family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]
    }


def default_collector_names() -> set[str]:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return _series_names(registry)


def contract_metric_names() -> set[str]:
    """Series names of the metrics listed in docs/metrics.md (wildcard rows excluded)."""
    names = set()
    for row in METRICS_DOC.read_text().splitlines():
        match = re.match(r"\|\s*`([a-z_:]+)`\s*\|\s*(\w+)", row)
        if not match:
            continue
        name, kind = match.groups()
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        else:
            names.add(name)
    assert "http_server_request_duration_seconds_bucket" in names, (
        "docs/metrics.md table not understood"
    )
    return names


@pytest.fixture(scope="module")
def known_metrics(rules: list[dict[str, Any]]) -> set[str]:
    recorded = {rule["record"] for rule in rules if "record" in rule}
    return (
        contract_metric_names()
        | default_collector_names()
        | recorded
        | PROMETHEUS_SERIES
    )


def test_every_queried_metric_is_in_the_contract(
    known_metrics: set[str], dashboard_queries: list[Any]
) -> None:
    unknown = {
        f"{query}: {name}"
        for query in dashboard_queries
        for name in metric_names(query.expr) - known_metrics
    }
    assert unknown == set()


def test_queries_use_rate_interval_for_every_range(dashboard_queries: list[Any]) -> None:
    for query in dashboard_queries:
        windows = re.findall(r"\[([^\]]*)\]", query.expr)
        assert all(window == "$__rate_interval" for window in windows), str(query)
        if re.search(r"\b(rate|irate|increase)\s*\(", query.expr):
            assert windows, str(query)


def test_every_selector_is_scoped_to_the_chosen_service(dashboard_queries: list[Any]) -> None:
    for query in dashboard_queries:
        selectors = re.findall(r"\{([^}]*)\}", query.expr)
        assert selectors, f"unscoped query: {query}"
        for selector in selectors:
            assert 'service="$service"' in selector, str(query)


def test_every_panel_sets_a_unit(panels: list[tuple[str, dict[str, Any]]]) -> None:
    for name, panel in panels:
        assert panel.get("targets"), f"{name} / {panel['title']} queries nothing"
        assert panel["fieldConfig"]["defaults"].get("unit"), (
            f"{name} / {panel['title']} has no unit"
        )


def test_every_dashboard_has_a_service_variable(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, dashboard in dashboards.items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert "service" in variables, name
        assert re.fullmatch(r"label_values\(\w+, service\)", variables["service"]["definition"]), (
            name
        )


def test_dashboard_identity(dashboards: dict[str, dict[str, Any]]) -> None:
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids)
    for name, dashboard in dashboards.items():
        assert dashboard["uid"] == Path(name).stem, "uid and file name agree, so links stay stable"
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"


def test_latency_panels_show_exemplars(dashboards: dict[str, dict[str, Any]]) -> None:
    for name in ("service-overview.json", "service-outbound.json"):
        latency = [
            target
            for panel in dashboards[name]["panels"]
            for target in panel.get("targets", [])
            if "histogram_quantile" in target.get("expr", "")
            and "_duration_seconds_bucket" in target["expr"]
            and panel["type"] == "timeseries"
        ]
        assert latency, name
        assert all(target["exemplar"] for target in latency), name


# --- datasources ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def datasources_file() -> Path:
    return PROVISIONING / "datasources" / "datasources.yml"


@pytest.fixture(scope="module")
def datasources(datasources_file: Path) -> dict[str, dict[str, Any]]:
    return {ds["uid"]: ds for ds in yaml.safe_load(datasources_file.read_text())["datasources"]}


def _datasource_refs(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        refs = [node["datasource"]] if isinstance(node.get("datasource"), dict) else []
        return refs + [ref for value in node.values() for ref in _datasource_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _datasource_refs(value)]
    return []


def test_datasource_uids_are_pinned(datasources: dict[str, dict[str, Any]]) -> None:
    assert {uid: ds["type"] for uid, ds in datasources.items()} == {
        "prometheus": "prometheus",
        "jaeger": "jaeger",
    }


def test_dashboards_reference_provisioned_datasources(
    dashboards: dict[str, dict[str, Any]], datasources: dict[str, dict[str, Any]]
) -> None:
    for name, dashboard in dashboards.items():
        for ref in _datasource_refs(dashboard):
            if ref["uid"] == GRAFANA_BUILTIN_DATASOURCE:
                continue
            assert ref["uid"] in datasources, f"{name}: unknown datasource {ref}"
            assert ref["type"] == datasources[ref["uid"]]["type"], f"{name}: {ref}"


def test_exemplars_link_to_jaeger(datasources: dict[str, dict[str, Any]]) -> None:
    destinations = datasources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert {"name": "trace_id", "datasourceUid": "jaeger"} in destinations


def test_traces_link_to_metrics_and_draw_a_node_graph(
    datasources: dict[str, dict[str, Any]],
) -> None:
    jaeger = datasources["jaeger"]["jsonData"]
    assert jaeger["nodeGraph"]["enabled"] is True
    traces_to_metrics = jaeger["tracesToMetrics"]
    assert traces_to_metrics["datasourceUid"] == "prometheus"
    assert {"key": "service.name", "value": "service"} in traces_to_metrics["tags"]
    assert traces_to_metrics["queries"]


def test_provisioning_files_escape_dollars(datasources_file: Path) -> None:
    # Grafana expands $VAR and ${VAR} from its environment in provisioning files;
    # an unescaped $__tags would silently become an empty string.
    for path in PROVISIONING.rglob("*.yml"):
        text = re.sub(r"\$\$", "", path.read_text())
        assert "$" not in text, f"{path}: escape $ as $$"


# --- Grafana's own dashboard schema ---------------------------------------------------

GRAFANA_SCHEMA = Path(__file__).resolve().parent / "schemas" / "grafana-dashboard.schema.json"


@pytest.fixture(scope="module")
def grafana_schema() -> jsonschema.protocols.Validator:
    schema = json.loads(GRAFANA_SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_the_schema_is_the_pinned_grafanas(compose: dict[str, Any]) -> None:
    pinned = compose["services"]["grafana"]["image"].rpartition(":")[2]
    comment = json.loads(GRAFANA_SCHEMA.read_text())["$comment"]
    assert f"@grafana/schema {pinned} " in comment, "regenerate it: tests/stack/schemas/README.md"


def test_dashboards_match_grafanas_schema(
    grafana_schema: jsonschema.protocols.Validator, dashboards: dict[str, dict[str, Any]]
) -> None:
    errors = [
        f"{name}: {'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
        for name, dashboard in dashboards.items()
        for error in grafana_schema.iter_errors(dashboard)
    ]
    assert errors == []


def test_grafanas_schema_catches_a_broken_dashboard(
    grafana_schema: jsonschema.protocols.Validator, dashboards: dict[str, dict[str, Any]]
) -> None:
    broken = copy.deepcopy(dashboards["service-overview.json"])
    broken["graphTooltip"] = 7  # 0, 1 or 2
    broken["links"][0]["type"] = "url"  # "link" or "dashboards"
    broken["templating"]["list"][0]["refresh"] = "on load"  # a number
    broken["time"] = {"from": 6}
    found = {"/".join(map(str, e.absolute_path)) for e in grafana_schema.iter_errors(broken)}
    assert {"graphTooltip", "links/0/type", "templating/list/0/refresh", "time/from"} <= found
