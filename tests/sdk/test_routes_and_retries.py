"""The SDK's HTTP client: a method for every route the node serves, and retries that honour
``Retry-After`` against a real node app that rate-limits."""

from __future__ import annotations

import inspect
from pathlib import Path

import trio

from client.http import ROUTE_METHODS, ApiError, NodeClient
from node.api.app import build_app
from node.api.openapi import ROUTE_DOCS
from tests.node.test_api_served import opened_node, served


def test_every_route_has_exactly_one_sdk_method() -> None:
    routes = sorted(ROUTE_METHODS.values())
    assert len(routes) == len(set(routes)), "two SDK methods call the same route"
    missing = sorted(set(ROUTE_DOCS) - set(routes))
    assert not missing, f"routes without an SDK method in client/http.py: {missing}"
    unknown = sorted(set(routes) - set(ROUTE_DOCS))
    assert not unknown, f"SDK methods for routes the node does not serve: {unknown}"


def test_route_methods_take_the_path_parameters_by_name() -> None:
    for name, (_, path) in ROUTE_METHODS.items():
        params = inspect.signature(getattr(NodeClient, name)).parameters
        for part in path.split("/"):
            if part.startswith("{"):
                assert part.strip("{}") in params, f"{name} lacks the {part} parameter"


async def test_the_client_waits_as_told_by_retry_after_then_succeeds(tmp_path: Path) -> None:
    # One request per second, two at once: the third request of a burst is refused with 429 and
    # Retry-After, and the client must wait and succeed instead of failing.
    with opened_node(tmp_path, client_rate_per_s=1, client_burst=2) as n:
        async with served(build_app(n)) as (base, _):

            def burst(retries: int) -> tuple[int, list[str]]:
                codes: list[str] = []
                with NodeClient(base, retries=retries, retry_wait_max_s=10.0) as client:
                    for _ in range(6):
                        try:
                            client.status()
                            codes.append("ok")
                        except ApiError as exc:
                            codes.append(exc.code)
                    return client.retried, codes

            retried, codes = await trio.to_thread.run_sync(burst, 3)
            assert codes == ["ok"] * 6
            assert retried >= 1
            # Without retries the same burst shows the refusals the client absorbed above.
            await trio.sleep(2.5)
            retried, codes = await trio.to_thread.run_sync(burst, 0)
            assert retried == 0
            assert "rate_limited" in codes
