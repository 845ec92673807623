"""Failure of a command-line program with its exit code (0 ok, 1 rejected, 2 usage or
connection error).

Shared by ``perpbft`` (``cli``) and the localnet's own programs (``python -m localnet.oracle``
and the demo traders), which report an unreachable node or a bad argument the same way.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class OffGridError(CliError):
    """A price or size that is not a whole number of the market's ticks or lots: refused
    before anything is signed, since the chain counts only whole ticks and lots."""
