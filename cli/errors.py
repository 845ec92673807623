"""Command-line failure with an exit code (0 ok, 1 rejected, 2 usage or connection error).

Defined in ``client.errors`` (the localnet's programs raise it too); the commands import it
from here.
"""

from __future__ import annotations

from client.errors import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, CliError

__all__ = ["EXIT_OK", "EXIT_REJECTED", "EXIT_USAGE", "CliError"]
