"""Structured logs carry height/view; metrics render in the Prometheus text format."""

from __future__ import annotations

import io
import json

from prometheus_client.parser import text_string_to_metric_families

from node.logs import configure_logging, fields, get_logger
from node.metrics import Metrics


def test_json_log_lines_carry_context_and_fields() -> None:
    out = io.StringIO()
    configure_logging("json", "info", out, context=lambda: {"height": 7, "view": 9})
    get_logger("consensus").info("block_committed", extra=fields(txs=3))
    get_logger().debug("hidden")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    body = json.loads(lines[0])
    assert body["event"] == "block_committed" and body["height"] == 7 and body["view"] == 9
    assert body["txs"] == 3 and body["level"] == "info"


def test_text_log_lines_are_readable() -> None:
    out = io.StringIO()
    configure_logging("text", "debug", out, context=lambda: {"height": 1})
    get_logger().warning("peer_dropped", extra=fields(peer="ab12"))
    line = out.getvalue().strip()
    assert "WARNING" in line and "peer_dropped" in line and "height=1" in line
    assert "peer=ab12" in line


def test_metrics_render_and_parse() -> None:
    m = Metrics()
    m.commits.inc()
    m.tx_rejected.labels(reason="bad_signature").inc(2)
    m.block_execution_seconds.observe(0.004)
    m.height.set(12)
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    assert families["perpbft_commits"].samples[0].value == 1
    rejected = [
        s for s in families["perpbft_transactions_rejected"].samples if s.name.endswith("_total")
    ]
    assert rejected[0].labels == {"reason": "bad_signature"} and rejected[0].value == 2
    assert families["perpbft_height"].samples[0].value == 12
