"""The Grafana dashboard: imports on any Grafana, every query parses, every metric exists.

The dashboard is a JSON file nobody runs in CI (Grafana is not in Debian), so it drifts
silently: a renamed metric or label leaves a panel blank, a typo in PromQL leaves it red.
These tests pin it to the two things that can be checked offline: Prometheus's own parser
(``promtool check rules``, each query wrapped as a recording rule) and the exporter's
source, which is the one home of the ``pixcrawler_*`` names. Those names are read from the
metric constructors in ``pixcrawler/exporter/*.py`` rather than listed here; the reading is
itself checked against what the exporter's registry serves when it runs against a broker
that is not there (every part that needs no Redis still yields its families).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pixcrawler.celery_core.config import load_settings
from pixcrawler.exporter.server import build
from tests.support.dashboard import (
    DASHBOARD,
    concrete,
    load,
    panels,
    queries,
    variable_query,
    variables,
)
from tests.support.paths import REPO

ALERT_RULES = DASHBOARD.parent / "pixcrawler-alerts.yml"
EXPORTER = REPO / "pixcrawler" / "exporter"

#: The one datasource reference a panel may carry: the dashboard's own variable.
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: Grafana 10.0 writes 38, 11.x up to 41; older Grafanas migrate forward, never back.
SCHEMA_VERSIONS = range(38, 42)
PANEL_TYPES = {"row", "timeseries", "stat", "table", "gauge", "bargauge", "text", "state-timeline"}
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
#: Constructors of metric families, by what their samples are called.
CONSTRUCTORS = {
    "Gauge": "gauge",
    "GaugeMetricFamily": "gauge",
    "_gauge": "gauge",  # collector.py's shorthand for a labelled GaugeMetricFamily
    "Counter": "counter",
    "CounterMetricFamily": "counter",
    "Histogram": "histogram",
    "HistogramMetricFamily": "histogram",
}
SUFFIXES = {"gauge": ("",), "counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
_METRIC_NAME = re.compile(r"^pixcrawler_[a-z0-9_]+$")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTOR = re.compile(r"(?<![\w:])(pixcrawler_\w+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"')
_LABEL_VALUES = re.compile(r"^label_values\(\s*(\w+)\s*(?:\{[^}]*\})?\s*,\s*(\w+)\s*\)$")


@dataclass(frozen=True)
class Family:
    kind: str
    #: The label names, or None where the source passes them as something else than a
    #: literal list (then only the name is checked).
    labels: frozenset[str] | None

    def samples(self, name: str) -> set[str]:
        base = name.removesuffix("_total") if self.kind == "counter" else name
        return {base + suffix for suffix in SUFFIXES[self.kind]}


def _concrete(expr: str, defined: dict[str, Any]) -> str:
    # A multi-value variable becomes a regex alternation inside the matcher's string.
    values = {
        name: "crawl|validation" if v.get("multi") else "crawl" for name, v in defined.items()
    }
    return concrete(expr, defined, values)


def _exporter_families() -> dict[str, Family]:
    """The pixcrawler_* families the exporter's source constructs, read from its AST."""
    families: dict[str, Family] = {}
    for path in sorted(EXPORTER.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            if not _METRIC_NAME.match(first.value):
                continue
            func = node.func
            callee = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "?")
            assert callee in CONSTRUCTORS, (
                f"{path.name}:{node.lineno} builds {first.value} with {callee}(): teach"
                " CONSTRUCTORS in this test what its samples are called"
            )
            families[first.value] = Family(CONSTRUCTORS[callee], _label_names(node))
    return families


def _label_names(call: ast.Call) -> frozenset[str] | None:
    given: ast.expr | None = call.args[2] if len(call.args) > 2 else None
    for keyword in call.keywords:
        if keyword.arg in ("labels", "labelnames"):
            given = keyword.value
    if given is None:
        return frozenset()
    if isinstance(given, ast.List | ast.Tuple) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in given.elts
    ):
        return frozenset(str(e.value) for e in given.elts)  # type: ignore[attr-defined]
    return None


def _exporter_samples(families: dict[str, Family]) -> dict[str, tuple[str, Family]]:
    """sample name -> (family name, family)."""
    return {
        sample: (name, family)
        for name, family in families.items()
        for sample in family.samples(name)
    }


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"(?<![\w:])pixcrawler_\w+", _STRING.sub('""', expr)))


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian package prometheus; scripts/bootstrap)")
    return found


# --- import ------------------------------------------------------------------------------


def test_the_dashboard_has_what_grafana_needs_on_import() -> None:
    dashboard = load()
    assert isinstance(dashboard["title"], str)
    assert dashboard["title"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"]), "uid: 1-40 URL-safe chars"
    assert dashboard["schemaVersion"] in SCHEMA_VERSIONS
    # An id is the database row of one Grafana; a file carrying one overwrites another
    # dashboard on import.
    assert dashboard.get("id") is None
    assert {"from", "to"} <= dashboard["time"].keys()
    defined = variables(dashboard)
    assert defined["datasource"]["type"] == "datasource"
    assert defined["datasource"]["query"] == "prometheus"
    queue = defined["queue"]
    assert queue["type"] == "query"
    assert variable_query(queue) == "label_values(pixcrawler_queue_backlog, queue)"
    for panel in panels(dashboard):
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        assert panel.get("type") in PANEL_TYPES, where
        assert isinstance(panel.get("title"), str), where
        assert panel["title"], where
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in "hwxy"), where
        assert min(grid["w"], grid["h"]) > 0, where
        assert min(grid["x"], grid["y"]) >= 0, where
        assert grid["x"] + grid["w"] <= 24, where
        if panel["type"] == "row":
            continue
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids, where
        assert len(ref_ids) == len(set(ref_ids)), where
        assert all(isinstance(t.get("expr"), str) and t["expr"].strip() for t in panel["targets"])


def test_panels_do_not_overlap() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in panels(load()):
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = taken.setdefault((x, y), panel["title"])
                assert other == panel["title"], f"{panel['title']!r} overlaps {other!r}"


def test_every_panel_has_a_unique_id() -> None:
    ids = [panel.get("id") for panel in panels(load())]
    assert all(isinstance(i, int) for i in ids), ids
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert duplicates == [], f"panel ids used twice: {duplicates}"


def test_no_datasource_uid_is_hard_coded() -> None:
    """A UID names one Grafana's data source: every reference goes through the variable."""
    dashboard = load()
    assert "__inputs" not in dashboard  # an export "for sharing externally" needs no variable

    def walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "datasource":
                    yield path, value
                yield from walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk(value, f"{path}[{index}]")

    found = list(walk(dashboard, "$"))
    assert found, "no datasource reference at all"
    for path, value in found:
        assert value == DATASOURCE, f"{path}: {value!r}"
    for panel in panels(dashboard):
        if panel["type"] != "row":
            assert panel.get("datasource") == DATASOURCE, panel["title"]
            assert all(t.get("datasource") == DATASOURCE for t in panel["targets"]), panel["title"]


# --- queries -----------------------------------------------------------------------------


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    dashboard = load()
    defined = variables(dashboard)
    rules = []
    names: dict[str, str] = {}
    for index, (where, expr) in enumerate(queries(dashboard)):
        record = f"dashboard:query_{index}"
        names[record] = where
        rules.append({"record": record, "expr": _concrete(expr, defined)})
    assert rules
    path = tmp_path / "dashboard-rules.yml"
    # YAML is a superset of JSON: no YAML writer needed.
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}, indent=1))
    result = subprocess.run(
        [_promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, (
        result.stdout + result.stderr + "\n" + "\n".join(f"{k}: {v}" for k, v in names.items())
    )


def test_every_pixcrawler_metric_and_label_exists_in_the_exporter() -> None:
    dashboard = load()
    defined = variables(dashboard)
    samples = _exporter_samples(_exporter_families())
    used: set[str] = set()
    for where, expr in queries(dashboard):
        query = _concrete(expr, defined)
        for name in _metric_names(query):
            used.add(name)
            assert name in samples, f"{where}: {name} is no metric of pixcrawler/exporter"
        for name, matchers in _SELECTOR.findall(query):
            family = samples[name][1]
            if family.labels is None:
                continue
            allowed = (
                family.labels | TARGET_LABELS | ({"le"} if name.endswith("_bucket") else set())
            )
            for label in _MATCHER.findall(matchers):
                assert label in allowed, f"{where}: {name} has no label {label!r}"
    for variable in defined.values():
        if variable["type"] != "query":
            continue
        match = _LABEL_VALUES.match(variable_query(variable))
        assert match, f"variable {variable['name']}: not a label_values() query"
        metric, label = match.groups()
        assert metric in samples, f"variable {variable['name']}: no metric {metric}"
        labels = samples[metric][1].labels
        assert labels is None or label in labels, f"variable {variable['name']}: no {label}"
    assert used, "the dashboard uses no pixcrawler_* metric at all"


def test_reading_the_source_finds_what_the_exporter_serves(tmp_path: Path) -> None:
    """The AST reading above against a real registry: the exporter run with no broker.

    Port 1 on loopback refuses at once, so the Redis parts fail (and are counted) while
    the consumers, the store probe, the error counter and the event families still come
    out; a few events give the counter and the histogram their samples.
    """
    env = {
        "PIXCRAWLER_CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
        "PIXCRAWLER_CELERY_RESULT_BACKEND": "redis://127.0.0.1:1/1",
        "PIXCRAWLER_CELERY_STORAGE_DIR": str(tmp_path),
        "PIXCRAWLER_CELERY_EXPORTER_TIMEOUT": "1",
    }
    registry, follower = build(load_settings(env))
    task = "pixcrawler.tasks.crawl.crawl_image"
    for event in (
        {"type": "task-sent", "uuid": "1", "name": task, "queue": "crawl"},
        {"type": "task-succeeded", "uuid": "1", "runtime": 0.3},
        {"type": "task-received", "uuid": "2", "name": task},
        {"type": "task-failed", "uuid": "2", "exception": "TaskError('not_an_image', '')"},
    ):
        follower.state.handle(event)
    samples = _exporter_samples(_exporter_families())
    served: set[str] = set()
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue  # the server turns these off (disable_created_metrics)
            served.add(sample.name)
            assert sample.name in samples, f"served but not found in the source: {sample.name}"
            labels = samples[sample.name][1].labels
            if labels is not None:
                assert set(sample.labels) - {"le"} <= labels, sample
    assert {
        "pixcrawler_queue_consumers",
        "pixcrawler_object_store_up",
        "pixcrawler_exporter_scrape_errors_total",
        "pixcrawler_task_outcomes_total",
        "pixcrawler_task_runtime_seconds_bucket",
    } <= served


# --- descriptions ------------------------------------------------------------------------


def _alert_names() -> set[str]:
    yaml = pytest.importorskip("yaml")  # the deploy group's, as in test_alert_rules.py
    rules = yaml.safe_load(ALERT_RULES.read_text())
    return {
        rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule
    }


def test_every_panel_says_what_a_bad_value_means_and_names_real_alerts() -> None:
    alerts = _alert_names()
    pointed: set[str] = set()
    for panel in panels(load()):
        if panel["type"] == "row":
            continue
        description = panel.get("description", "")
        assert len(description) > 60, f"{panel['title']!r}: say what a bad value means"
        for name in re.findall(r"PixCrawler\w+", description):
            assert name in alerts, f"{panel['title']!r} points to {name}, no alert of the rules"
            pointed.add(name)
    assert alerts - pointed == set(), "alerts no panel points to (add a panel or mention)"
