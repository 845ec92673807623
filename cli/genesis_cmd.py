"""``perpbft genesis info`` and ``perpbft genesis build``: a genesis ceremony between
independent operators (docs/OPERATIONS.md, "Genesis ceremony").

Each operator runs ``perpbft init`` on their own machine and ``perpbft genesis info`` to print
their validator's public facts (public key, power, p2p address: never the private key); one
coordinator collects those files and runs ``perpbft genesis build``, which writes
``genesis.json`` and the ``p2p.peers`` lines; every operator checks the genesis hash it prints,
copies the file to ``config/genesis.json`` and adds the other validators as peers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from cli.errors import EXIT_OK, CliError
from cli.node_cmd import add_home_argument, load_home_config
from node.keys import KeyFileError, read_key_file
from p2p.address import PeerAddress, parse_host_port, parse_public_key
from state_machine.genesis import USDC, GenesisError, default_genesis
from state_machine.staking.actions import ADDRESS_CHARS, MAX_P2P_ADDRESS_CHARS
from state_machine.staking.genesis import GenesisOperator, StakingGenesis

INFO_FILES_MAX = 256
INFO_FILE_BYTES_MAX = 64 * 1024


def register(sub: Any) -> None:
    genesis = sub.add_parser("genesis", help="build a network's genesis from operators' infos")
    commands = genesis.add_subparsers(dest="genesis_command", required=True)

    info = commands.add_parser("info", help="print this validator's public info (JSON)")
    add_home_argument(info)
    info.add_argument(
        "--address", required=True, help="host:port where the other validators reach this p2p"
    )
    info.add_argument(
        "--power",
        type=int,
        default=1,
        help="voting power (default 1); with staking, the self-stake in whole USDC",
    )
    info.set_defaults(func=cmd_info)

    build = commands.add_parser("build", help="write genesis.json from validators' info files")
    build.add_argument("--chain-id", required=True)
    build.add_argument(
        "--info", type=Path, action="append", required=True, help="one per validator"
    )
    build.add_argument("--out", type=Path, required=True, help="the genesis.json to write")
    build.add_argument(
        "--fund", action="append", default=[], help="public key (hex) of an account to fund"
    )
    build.add_argument("--genesis-time-ms", type=int, default=None)
    build.add_argument(
        "--staking",
        action="store_true",
        help="turn staking on: each validator's power is its self-stake in whole USDC and its "
        "info's address goes into its validator record",
    )
    build.add_argument("--epoch-blocks", type=int, default=None, help="blocks per epoch")
    build.add_argument("--active-set-size", type=int, default=None, help="top N by stake")
    build.add_argument(
        "--min-self-stake-usdc", type=int, default=None, help="minimum self-stake (whole USDC)"
    )
    build.add_argument("--json", action="store_true", help="print JSON instead of text")
    build.set_defaults(func=cmd_build)


def cmd_info(args: argparse.Namespace) -> int:
    config = load_home_config(args.home)
    try:
        key = read_key_file(config.node_key_path)
        parse_host_port(args.address)
    except (KeyFileError, ValueError) as exc:
        raise CliError(str(exc)) from None
    if not 1 <= args.power <= 2**32:
        raise CliError("--power must be between 1 and 2^32")
    print(
        json.dumps(
            {
                "moniker": config.node.moniker,
                "pubkey": key.public_key.hex(),
                "power": args.power,
                "address": args.address,
            }
        )
    )
    return EXIT_OK


def read_info(path: Path) -> tuple[bytes, int, str]:
    """(public key, power, address) from one operator's info file; CliError names the file."""
    try:
        if path.stat().st_size > INFO_FILE_BYTES_MAX:
            raise CliError(f"{path}: larger than {INFO_FILE_BYTES_MAX} bytes")
        body = json.loads(path.read_text(encoding="utf-8"))
        pubkey = parse_public_key(body["pubkey"])
        power = body["power"]
        address = body["address"]
        parse_host_port(address)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliError(f"{path}: not a validator info file ({exc})") from None
    if type(power) is not int or not 1 <= power <= 2**32:
        raise CliError(f"{path}: power must be an integer between 1 and 2^32")
    return pubkey, power, address


def staking_section(
    args: argparse.Namespace, infos: list[tuple[bytes, int, str]]
) -> StakingGenesis | None:
    """The genesis ``staking`` section the flags ask for (None without ``--staking``). Each
    validator operates itself and publishes its info's address."""
    tuning = (args.epoch_blocks, args.active_set_size, args.min_self_stake_usdc)
    if not args.staking:
        if any(value is not None for value in tuning):
            raise CliError(
                "--epoch-blocks, --active-set-size and --min-self-stake-usdc need --staking"
            )
        return None
    defaults = StakingGenesis()
    values = {
        "epoch_length_blocks": args.epoch_blocks,
        "active_set_size": args.active_set_size,
        "min_self_stake_atoms": None
        if args.min_self_stake_usdc is None
        else args.min_self_stake_usdc * USDC,
    }
    for name, value in values.items():
        if value is not None and not 0 < value < 2**63:
            raise CliError(f"{name}: must be positive")
    for _, _, address in infos:
        if len(address) > MAX_P2P_ADDRESS_CHARS or any(c not in ADDRESS_CHARS for c in address):
            raise CliError(f"address {address!r}: at most 128 characters of [{ADDRESS_CHARS}]")
    operators = tuple(GenesisOperator(pk, pk, address) for pk, _, address in infos)
    return dataclasses.replace(
        defaults,
        **{k: v for k, v in values.items() if v is not None},
        operators=operators,
    )


def cmd_build(args: argparse.Namespace) -> int:
    if len(args.info) > INFO_FILES_MAX:
        raise CliError(f"at most {INFO_FILES_MAX} validators")
    infos = [read_info(path) for path in args.info]
    try:
        funded = [parse_public_key(text) for text in args.fund]
    except ValueError as exc:
        raise CliError(f"--fund: {exc}") from None
    start_ms = args.genesis_time_ms if args.genesis_time_ms is not None else int(time.time() * 1000)
    try:
        genesis = default_genesis(
            args.chain_id,
            [(pk, power) for pk, power, _ in infos],
            funded,
            start_ms,
            staking=staking_section(args, infos),
        )
    except (GenesisError, ValueError) as exc:
        raise CliError(str(exc)) from None
    args.out.write_text(genesis.to_json())
    peers = []
    for pk, _, address in infos:
        host, port = parse_host_port(address)
        peers.append(str(PeerAddress(pk, host, port)))
    summary = {"genesis": str(args.out), "genesis_hash": genesis.hash().hex(), "peers": peers}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {args.out} ({len(infos)} validators)")
        print(f"genesis hash {summary['genesis_hash']} (every operator checks this)")
        print("p2p.peers (each validator lists the others):")
        for line in peers:
            print(f'  "{line}",')
    return EXIT_OK
