"""The light client trusts only the genesis validators: a proof certified by a QC that is validly
signed, by more than 2/3 of another validator set, is refused (``perpbft proof account``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.lightclient import expected_account_keys, verify_account_proof
from cli.main import main
from consensus.quorum import qc_valid
from consensus.types import COMMIT, BlockHeader, QCSignature, QuorumCert, genesis_block
from consensus.validators import ValidatorSet
from consensus.verify import sign_vote
from state_machine.codec import encode
from state_machine.crypto import Keypair, sha256
from state_machine.genesis import default_genesis, genesis_to_json
from state_machine.merkle_state import MerkleState

CHAIN = "perpbft-test"
GENESIS_KEYS = [Keypair(sha256(b"genesis-validator-%d" % i)) for i in range(4)]
FOREIGN_KEYS = [Keypair(sha256(b"foreign-validator-%d" % i)) for i in range(4)]
TRADER = Keypair(sha256(b"light-client-trader"))
GENESIS = default_genesis(CHAIN, [(k.public_key, 1) for k in GENESIS_KEYS], [TRADER.public_key])
HEIGHT = 12
REFUSAL = "commit QC is not signed by more than 2/3 of the genesis validators' power"


def answer_signed_by(signers: list[Keypair]) -> dict[str, Any]:
    """A correct proof of TRADER's account after block HEIGHT, certified by ``signers``."""
    keys = expected_account_keys(GENESIS, TRADER.public_key)
    values = {k: encode([5_000 + i, 0]) for i, k in enumerate(keys) if k[0] == 1}
    tree = MerkleState.from_entries(values.items())
    header = BlockHeader(HEIGHT + 1, HEIGHT + 1, b"\x11" * 32, 1_700_000_009_000,
                         GENESIS_KEYS[0].public_key, b"\x22" * 32, tree.root())  # fmt: skip
    block_hash = header.block_hash()
    sigs = tuple(
        QCSignature(k.public_key, sign_vote(k, CHAIN, COMMIT, HEIGHT + 1, HEIGHT + 1,
                                            block_hash).signature)
        for k in signers
    )  # fmt: skip
    qc = QuorumCert(COMMIT, HEIGHT + 1, HEIGHT + 1, block_hash, sigs)
    return {
        "address": TRADER.public_key.hex(),
        "height": HEIGHT,
        "state_root": tree.root().hex(),
        "entries": [
            {"key": k.hex(), "value": values[k].hex() if k in values else None,
             "proof": tree.prove(k).to_wire().hex()}
            for k in keys
        ],
        "certified_by": {"header": {"wire": header.to_wire().hex()},
                         "commit_qc": {"wire": qc.to_wire().hex()}},
    }  # fmt: skip


def test_the_foreign_qc_is_valid_for_its_own_validator_set() -> None:
    """The refusal below is about whose QC it is, not a broken signature: for the foreign set
    the same certificate is a valid quorum."""
    qc = QuorumCert.from_wire(
        bytes.fromhex(answer_signed_by(FOREIGN_KEYS[:3])["certified_by"]["commit_qc"]["wire"])
    )
    foreign = ValidatorSet([(k.public_key, 1) for k in FOREIGN_KEYS])
    assert qc_valid(qc, CHAIN, foreign, genesis_block(GENESIS.genesis_time_ms).block_hash())


@pytest.mark.parametrize(
    "signers",
    [FOREIGN_KEYS[:3], FOREIGN_KEYS, GENESIS_KEYS[:2] + FOREIGN_KEYS[:2]],
    ids=["three-of-four-foreign", "all-foreign", "two-genesis-two-foreign"],
)
def test_a_qc_of_another_validator_set_is_refused(signers: list[Keypair]) -> None:
    check = verify_account_proof(answer_signed_by(signers), GENESIS, TRADER.public_key)
    assert not check.ok
    assert len(check.failures) == 1 and check.failures[0].startswith(REFUSAL)


def test_proof_command_refuses_a_foreign_qc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    genesis = tmp_path / "genesis.json"
    genesis.write_text(genesis_to_json(GENESIS))
    argv = ["proof", "account", TRADER.public_key.hex(), "--genesis", str(genesis), "--proof-file"]
    honest, foreign = tmp_path / "honest.json", tmp_path / "foreign.json"
    honest.write_text(json.dumps(answer_signed_by(GENESIS_KEYS[:3])))
    foreign.write_text(json.dumps(answer_signed_by(FOREIGN_KEYS[:3])))
    assert main([*argv, str(honest)]) == 0
    assert capsys.readouterr().out.startswith("VERIFIED")
    assert main([*argv, str(foreign)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("NOT VERIFIED")
    assert REFUSAL in out
