"""Signing transactions with a key file: the key, a fresh client-side nonce for that file
(``client.nonces``) and the chain id the node reports, in one place for every program."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from client.errors import CliError
from client.nonces import next_nonce
from node.keys import KeyFileError, read_key_file
from state_machine.crypto import Keypair
from state_machine.tx import Action, Transaction, sign_transaction


def load_key_file(path: Path) -> Keypair:
    """The key in ``path``; a missing or malformed file is a one-line usage error."""
    try:
        return read_key_file(path)
    except KeyFileError as exc:
        raise CliError(str(exc)) from None


def sign_actions(
    key_path: Path, chain_id: str, actions: Sequence[Action], key: Keypair | None = None
) -> Transaction:
    """``actions`` signed by the key in ``key_path`` (or ``key``, already read from it) with
    the next nonce of that key file."""
    signer = load_key_file(key_path) if key is None else key
    return sign_transaction(signer, chain_id, next_nonce(key_path), list(actions))
