"""The bridge: deposits from and withdrawals to an EVM chain (docs/BRIDGE.md).

See ``engine.py`` for the theory of operation, ``records.py`` for the keys, ``params.py`` for
the genesis section and ``hook.py`` for the connection to the exchange (dispatch, entries).
"""
