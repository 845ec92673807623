"""Benchmarks run by ``perpbft bench NAME`` (``cli/bench.py`` registers them).

Each module has ``add_arguments(parser)`` and ``run(args) -> dict`` and prints its figures;
the command prints the returned dict as the last line. This package may import every layer
below ``cli`` (``client``, ``localnet``, ``node``, ``p2p``, ``consensus``, ``state_machine``)
and never ``cli``; a benchmark's usage error is a :class:`client.errors.CliError`.
"""
