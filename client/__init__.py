"""Programs that talk to a node through its public API: the HTTP client, client-side nonces,
transaction signing from key files and the market catalogue's exact unit arithmetic.

This package sits below both ``cli`` (the ``perpbft`` command) and ``localnet`` (the local
network's oracle feeders and demo traders), so neither has to import the other for these.
It imports only ``state_machine`` (transactions, keys) and the node's key-file and unit
helpers (``node.keys``, ``node.api.units``), never ``cli``, ``localnet`` or ``bench``.
"""
