"""The Grafana dashboard and the alerting rules: valid for promtool, unit-tested, and about metrics the code exports.

The rules are checked and unit-tested by Debian's promtool (package `prometheus`, installed by
`make system-packages` when root); without it those tests skip and name the package.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "helm" / "cloud" / "rules" / "vigil.rules.yaml"
RULE_TESTS = ROOT / "tests" / "prometheus" / "vigil.rules.test.yaml"
DASHBOARD = ROOT / "helm" / "cloud" / "dashboards" / "vigil.json"

# Grafana's range variables, replaced by a fixed window so promtool can parse the expressions.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
METRIC = re.compile(r"\bvigil_[a-z0-9_]+\b")
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "gauge": ("",),
}


def promtool() -> str:
    """The promtool binary, or skip naming the package that ships it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool not found: install Debian's `prometheus` package (make system-packages, as root) "
            "to check the alerting rules"
        )
    return path


def exported_series() -> set[str]:
    """Every series name the services' metrics modules register, with the suffixes Prometheus scrapes."""
    for path in sorted((ROOT / "services").glob("*/metrics.py")):
        importlib.import_module(f"services.{path.parent.name}.metrics")
    # The shared layers define their metrics beside the code that counts them.
    for module in ("metrics", "grpc_runtime", "signing"):
        importlib.import_module(f"services.common.{module}")
    names: set[str] = set()
    for family in REGISTRY.collect():
        if not family.name.startswith("vigil_"):
            continue
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of the dashboard, nested rows included."""
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            found.extend((panel["title"], t["expr"]) for t in panel.get("targets", []))
            walk(panel.get("panels", []))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    return found


def rule_exprs() -> list[tuple[str, str]]:
    """(alert name, PromQL) for every rule of the rules file."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(r.get("alert") or r["record"], r["expr"]) for g in groups for r in g["rules"]]


def test_every_metric_in_dashboard_and_rules_is_exported() -> None:
    exported = exported_series()
    used = {(where, name) for where, expr in [*dashboard_exprs(), *rule_exprs()] for name in METRIC.findall(expr)}
    missing = sorted(f"{name} (in {where!r})" for where, name in used if name not in exported)
    assert not missing, "the dashboard or rules name metrics no service exports:\n" + "\n".join(missing)
    # The panels the issue asks for are there, each over the metric that measures it.
    names = {name for _, name in used}
    for needed in (
        "vigil_gating_stage_seconds_bucket",
        "vigil_gating_camera_frames_total",
        "vigil_gating_frames_gated_total",
        "vigil_gating_structured_total",
        "vigil_uplink_pending_events",
        "vigil_uplink_bandwidth_estimate_bytes_per_second",
        "vigil_uplink_alert_delay_seconds_bucket",
        "vigil_uplink_evidence_expired_total",
        "vigil_bus_dead_lettered_total",
        "vigil_memory_raw_bytes",
        "vigil_memory_retrieve_seconds_bucket",
        "vigil_notifier_deliveries_total",
    ):
        assert needed in names, needed


def test_every_metric_the_descriptions_mention_is_exported_too() -> None:
    """Panel descriptions and alert annotations send people to metrics: those must exist as well."""
    exported = exported_series()
    mentioned = set(METRIC.findall(DASHBOARD.read_text())) | set(METRIC.findall(RULES.read_text()))
    # A histogram is named without its suffix in prose.
    histograms = {n.removesuffix("_bucket") for n in exported if n.endswith("_bucket")}
    assert sorted(mentioned - exported - histograms) == []


def test_the_checker_knows_the_suffixes() -> None:
    exported = exported_series()
    assert {"vigil_memory_retrieve_seconds_bucket", "vigil_memory_retrieve_seconds_count"} <= exported
    assert "vigil_gating_frames_total" in exported and "vigil_gating_frames" not in exported
    assert "vigil_memory_retrieve_seconds" not in exported


def test_dashboard_is_a_grafana_dashboard_on_a_datasource_variable() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "vigil-overview" and dash["title"]
    assert [v["name"] for v in dash["templating"]["list"] if v["type"] == "datasource"] == ["datasource"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["description"] and panel["targets"], panel["title"]


@pytest.mark.slow
def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    run = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.slow
def test_rules_pass_their_promtool_unit_tests() -> None:
    run = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    # Every alert of the file has at least one unit test.
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested = {t["alertname"] for case in cases for t in case["alert_rule_test"]}
    assert {name for name, _ in rule_exprs()} <= tested


@pytest.mark.slow
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool has no expression checker: each query becomes a recording rule of a throwaway file.
    rules = []
    for i, (_title, expr) in enumerate(dashboard_exprs()):
        for var, window in GRAFANA_VARIABLES.items():
            expr = expr.replace(var, window)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
