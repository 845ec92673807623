"""``perpbft keys new|show|encrypt``: create, inspect and encrypt Ed25519 key files."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from cli.errors import EXIT_OK, CliError
from node.keys import (
    PASSPHRASE_ENV,
    PASSPHRASE_FILE_ENV,
    KeyFileError,
    address_of,
    generate_keypair,
    passphrase_from_environment,
    read_key_file,
    write_key_file,
)


def register(sub: Any) -> None:
    keys = sub.add_parser("keys", help="create and show Ed25519 key files")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="SUBCOMMAND")
    keys_sub.required = True

    new = keys_sub.add_parser("new", help="write a new key file (mode 0600)")
    new.add_argument("--out", required=True, type=Path, help="path of the key file to write")
    new.add_argument("--force", action="store_true", help="overwrite an existing file")
    new.add_argument(
        "--encrypt",
        action="store_true",
        help=f"encrypt under a passphrase (${PASSPHRASE_FILE_ENV}, ${PASSPHRASE_ENV} or asked)",
    )
    new.add_argument("--json", action="store_true", help="print JSON instead of text")
    new.set_defaults(func=cmd_keys_new)

    encrypt = keys_sub.add_parser(
        "encrypt", help="encrypt a key file in place under a passphrase (scrypt + AEAD)"
    )
    encrypt.add_argument("file", type=Path)
    encrypt.add_argument("--json", action="store_true", help="print JSON instead of text")
    encrypt.set_defaults(func=cmd_keys_encrypt)

    show = keys_sub.add_parser("show", help="print the account address of a key file")
    show.add_argument("file", type=Path)
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(func=cmd_keys_show)


def _print_key(path: Path, address: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"file": str(path), "address": address}))
    else:
        print(address)


def new_passphrase() -> bytes:
    """The passphrase to encrypt under: from the environment, else typed twice."""
    if os.environ.get(PASSPHRASE_ENV) or os.environ.get(PASSPHRASE_FILE_ENV):
        return passphrase_from_environment(Path("(new key)"), prompt=False)
    if not sys.stdin.isatty():
        raise CliError(f"no passphrase: set ${PASSPHRASE_FILE_ENV} or run on a terminal")
    first = getpass.getpass("new passphrase: ")
    if getpass.getpass("again: ") != first:
        raise CliError("the passphrases differ; nothing was written")
    return first.encode("utf-8")


def cmd_keys_encrypt(args: argparse.Namespace) -> int:
    try:
        key = read_key_file(args.file)
        write_key_file(args.file, key, force=True, passphrase=new_passphrase())
    except KeyFileError as exc:
        raise CliError(str(exc)) from None
    _print_key(args.file, address_of(key.public_key), args.json)
    return EXIT_OK


def cmd_keys_new(args: argparse.Namespace) -> int:
    key = generate_keypair()
    try:
        passphrase = new_passphrase() if args.encrypt else None
        write_key_file(args.out, key, force=args.force, passphrase=passphrase)
    except KeyFileError as exc:
        raise CliError(str(exc)) from None
    _print_key(args.out, address_of(key.public_key), args.json)
    return EXIT_OK


def cmd_keys_show(args: argparse.Namespace) -> int:
    try:
        key = read_key_file(args.file)
    except KeyFileError as exc:
        raise CliError(str(exc)) from None
    _print_key(args.file, address_of(key.public_key), args.json)
    return EXIT_OK
