"""The Prometheus alert rules and the Grafana dashboard in ops/ name only metrics a running
node exports, and the rules parse (with promtool where it is installed: Debian's `prometheus`
package). A renamed or removed metric fails here instead of silently never alerting."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import Cluster
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

RULES = REPO_ROOT / "ops" / "prometheus" / "perpbft-alerts.yml"
DASHBOARD = REPO_ROOT / "ops" / "grafana" / "perpbft-dashboard.json"
# Series Prometheus makes itself rather than scraping them.
PROMETHEUS_OWN = {"up"}
PROMQL_WORDS = {
    "rate", "increase", "sum", "count", "max", "min", "avg", "scalar", "histogram_quantile",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset",
}  # fmt: skip
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "info": ("_info",),
    "gauge": ("",),
    "summary": ("", "_sum", "_count", "_created"),
    "unknown": ("",),
}


def metric_names(expr: str) -> set[str]:
    """The series names an expression reads (labels, strings, ranges and keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return words - PROMQL_WORDS


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    def walk(panels: list[dict[str, Any]]) -> list[str]:
        out = []
        for panel in panels:
            out += [t["expr"] for t in panel.get("targets", [])]
            out += walk(panel.get("panels", []))
        return out

    return walk(json.loads(DASHBOARD.read_text())["panels"])


def exported_names(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def test_the_checker_finds_metric_names() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (instance, le) (rate(a_seconds_bucket{phase="x"}[5m])))'
        " > 0.5 and on() scalar(max(b_total)) - c == 0"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c"}


def test_rules_and_dashboard_name_only_exported_metrics(tmp_path: Path) -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        assert rule["labels"]["severity"] in ("page", "warn") and rule["annotations"]["summary"]
    referenced = {n for e in rule_exprs() + dashboard_exprs() for n in metric_names(e)}
    assert len(referenced) > 30
    with Cluster(tmp_path, validators=1) as cluster:
        cluster.start(0)
        cluster.wait_height(1, timeout_s=60)
        assert cluster.status(0)["version"]  # type: ignore[index]
        scraped = cluster.http.get(cluster.metrics_url(0)).text
    missing = sorted(referenced - exported_names(scraped) - PROMETHEUS_OWN)
    assert missing == [], f"not exported by a node: {missing}"
    assert "perpbft_build_info" in referenced and "process_open_fds" in referenced


def test_promtool_accepts_the_rules() -> None:
    """Where promtool is installed (Debian: apt-get install prometheus); elsewhere the YAML
    and the metric names are still checked above."""
    promtool = shutil.which("promtool")
    yaml.safe_load(RULES.read_text())
    if promtool is not None:
        done = subprocess.run(
            [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
