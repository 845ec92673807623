"""The Python SDK of a node's public API (docs/SDK.md): a typed method per route with
``Retry-After`` retries (``client.http``), orders in decimal units (``client.trader``),
client-side nonces safe across processes (``client.nonces``), transaction signing from key
files (``client.signing``), the market catalogue's exact unit arithmetic (``client.markets``)
and WebSocket streams that reconnect and resync (``client.ws``).

This package sits below both ``cli`` (the ``perpbft`` command) and ``localnet`` (the local
network's oracle feeders and demo traders), so there is one client and neither has to import
the other for it. It imports only ``state_machine`` (transactions, keys) and the node's
key-file and unit helpers (``node.keys``, ``node.api.units``), never ``cli``, ``localnet`` or
``bench``.
"""
