"""Staking: validator registration, delegation, unbonding, epochs, evidence and jailing.

See ``engine.py`` for the theory of operation, ``records.py`` for the keys, ``hook.py`` for
the connection to the exchange (balances, transaction dispatch, block begin and end).
"""
