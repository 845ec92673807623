"""Governance: proposals voted by stake, governed market and exchange parameters, market
states and circuit breakers (see engine.py for the theory of operation)."""
