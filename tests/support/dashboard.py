"""The Grafana dashboard's queries, as Grafana would send them (tests/*/test_dashboard*.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from tests.support.paths import REPO

DASHBOARD = (
    REPO / "ansible" / "roles" / "pixcrawler_monitoring" / "files" / "pixcrawler-dashboard.json"
)
#: Grafana's built-in variables, as a query of a 6-hour dashboard would see them.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "30s",
    "__interval_ms": "30000",
    "__range": "6h",
    "__range_s": "21600",
}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def load() -> Any:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: Any) -> Iterator[Any]:
    """Every panel, also those inside a collapsed row."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def variables(dashboard: Any) -> dict[str, Any]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def variable_query(variable: Any) -> str:
    query = variable.get("query", "")
    return str(query.get("query", "")) if isinstance(query, dict) else str(query)


def queries(dashboard: Any) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]


def concrete(expr: str, defined: Mapping[str, Any], values: Mapping[str, str]) -> str:
    """*expr* with its variables replaced by *values* (query variables) or Grafana's
    built-ins; a variable the dashboard does not define, or one that is no query
    variable (the data source), fails."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        variable = defined.get(name)
        assert variable is not None, f"{expr!r} uses ${name}, which the dashboard does not define"
        assert variable["type"] == "query", f"{expr!r} uses ${name}, a {variable['type']} variable"
        return values[name]

    return _VARIABLE.sub(value, expr)
