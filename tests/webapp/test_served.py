"""The page's static files at /app and CORS, on a real node's API served by hypercorn."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from node.api.app import build_app
from node.api.webapp import STATIC_DIR, load_static_files
from node.config import ApiSettings, ConfigError, _parse_origin
from tests.node.test_api_served import opened_node, served

ALLOWED = "http://127.0.0.1:8080"


async def test_the_page_and_its_files_are_served_under_app(tmp_path: Path) -> None:
    with opened_node(tmp_path) as n:
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            moved = await http.get("/app")
            assert moved.status_code == 308 and moved.headers["location"] == "/app/"
            index = await http.get("/app/")
            assert index.status_code == 200
            assert index.headers["content-type"].startswith("text/html")
            assert "frame-ancestors 'none'" in index.headers["content-security-policy"]
            assert index.content == (STATIC_DIR / "index.html").read_bytes()
            codec = await http.get("/app/js/codec.js")
            assert codec.headers["content-type"].startswith("text/javascript")
            chart = await http.get(
                "/app/vendor/lightweight-charts/lightweight-charts.standalone.production.js"
            )
            assert chart.status_code == 200 and b"Lightweight Charts" in chart.content
            licence = await http.get("/app/vendor/noble-ed25519/LICENSE")
            assert licence.headers["content-type"].startswith("text/plain")
            # Unchanged file: 304 by its ETag.
            etag = codec.headers["etag"]
            again = await http.get("/app/js/codec.js", headers={"if-none-match": etag})
            assert again.status_code == 304 and not again.content


async def test_unknown_paths_and_methods_under_app_get_json_codes(tmp_path: Path) -> None:
    with opened_node(tmp_path) as n:
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            for path in ("/app/nope.js", "/app/../node/config.py", "/app/%2e%2e/pyproject.toml",
                         "/app/revendor.sh", "/app/js", "/apple"):  # fmt: skip
                answer = await http.get(path)
                assert answer.status_code == 404, path
                assert answer.json()["code"] == "not_found"
            posted = await http.post("/app/", content=b"x")
            assert posted.status_code == 405 and posted.json()["code"] == "method_not_allowed"
    counted = n.metrics.render().decode()
    assert 'perpbft_api_requests_total{route="app",status="404"}' in counted


async def test_cors_answers_allowed_origins_only(tmp_path: Path) -> None:
    with opened_node(tmp_path, cors_allowed_origins=(ALLOWED,)) as n:
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            preflight = {"origin": ALLOWED, "access-control-request-method": "POST",
                         "access-control-request-headers": "content-type"}  # fmt: skip
            answer = await http.options("/v1/txs", headers=preflight)
            assert answer.status_code == 204
            assert answer.headers["access-control-allow-origin"] == ALLOWED
            assert "POST" in answer.headers["access-control-allow-methods"]
            assert answer.headers["access-control-allow-headers"] == "content-type"
            refused = await http.options("/v1/txs", headers={**preflight, "origin": "http://evil"})
            assert refused.status_code == 403 and refused.json()["code"] == "origin_not_allowed"
            assert "access-control-allow-origin" not in refused.headers
            # Plain reads and the submission fast path carry the header for an allowed origin.
            status = await http.get("/v1/status", headers={"origin": ALLOWED})
            assert status.headers["access-control-allow-origin"] == ALLOWED
            assert status.headers["vary"] == "Origin"
            submitted = await http.post(
                "/v1/txs",
                content=b"\x91",
                headers={"origin": ALLOWED, "content-type": "application/msgpack"},
            )
            assert submitted.status_code == 400
            assert submitted.headers["access-control-allow-origin"] == ALLOWED
            # An error answer carries it too (a page must be able to read the refusal).
            bad = await http.get("/v1/accounts/xyz", headers={"origin": ALLOWED})
            assert bad.status_code == 400 and bad.headers["access-control-allow-origin"] == ALLOWED
            other = await http.get("/v1/status", headers={"origin": "http://evil"})
            assert "access-control-allow-origin" not in other.headers


async def test_cors_any_origin_and_none_configured(tmp_path: Path) -> None:
    with opened_node(tmp_path / "any", cors_allowed_origins=("*",)) as n:
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            answer = await http.get("/v1/status", headers={"origin": "http://anything:1"})
            assert answer.headers["access-control-allow-origin"] == "*"
            assert "vary" not in answer.headers
    with opened_node(tmp_path / "none") as n:
        async with served(build_app(n)) as (base, _), httpx.AsyncClient(base_url=base) as http:
            answer = await http.get("/v1/status", headers={"origin": ALLOWED})
            assert "access-control-allow-origin" not in answer.headers
            preflight = await http.options(
                "/v1/status", headers={"origin": ALLOWED, "access-control-request-method": "GET"}
            )
            assert preflight.status_code == 405


def test_allowed_origins_are_checked_when_the_config_loads() -> None:
    assert _parse_origin("*") == "*"
    assert _parse_origin("https://example.org:8443") == "https://example.org:8443"
    for bad in ("example.org", "http://example.org/", "ftp://x", "HTTP://X", "http://", "http://a b"):  # noqa: E501
        with pytest.raises(ValueError):
            _parse_origin(bad)
    assert ApiSettings().cors_allowed_origins == ()


def test_a_bad_origin_in_config_toml_is_a_config_error(tmp_path: Path) -> None:
    from node.config import init_home, load_config

    init_home(tmp_path)
    path = tmp_path / "config" / "config.toml"
    text = path.read_text()
    assert "cors_allowed_origins = []\n" in text
    path.write_text(text.replace("cors_allowed_origins = []", 'cors_allowed_origins = ["http://x/p"]'))
    with pytest.raises(ConfigError, match="cors_allowed_origins"):
        load_config(tmp_path)


def test_static_files_are_bounded_and_skip_scripts() -> None:
    files = load_static_files()
    assert "" in files and "index.html" in files and "js/main.js" in files
    assert not any(name.endswith(".sh") for name in files)
    assert "vendor/VERSIONS.txt" in files
