"""``SignaturePool.verify_async`` (node/sigpool.py): the pool's threads answered straight to
a trio task, without a trio worker thread between. Its verdicts are ``verify_many``'s, in
input order, whatever the batch size and however the batch is cut in chunks."""

from __future__ import annotations

import pytest
import trio

from node.sigpool import MIN_ITEMS_PER_CHUNK, SignaturePool
from state_machine.crypto import Keypair, sha256


def items(count: int) -> list[tuple[bytes, bytes, bytes]]:
    """Signed messages, every third one with a wrong signature."""
    out = []
    for i in range(count):
        key = Keypair(sha256(b"sigpool-async/%d" % i))
        message = b"message %d" % i
        signature = key.sign(message)
        if i % 3 == 2:
            signature = signature[:-1] + bytes([signature[-1] ^ 1])
        out.append((key.public_key, message, signature))
    return out


@pytest.mark.parametrize("count", [0, 1, MIN_ITEMS_PER_CHUNK - 1, 2 * MIN_ITEMS_PER_CHUNK + 3, 101])
@pytest.mark.parametrize("threads", [1, 3])
async def test_verdicts_are_verify_manys_in_order(count: int, threads: int) -> None:
    batch = items(count)
    with SignaturePool(threads) as pool:
        verdicts = await pool.verify_async(batch)
        assert verdicts == pool.verify_many(batch)
    assert verdicts == [i % 3 != 2 for i in range(count)]


async def test_a_cancel_waits_for_the_checks_and_other_batches_still_run() -> None:
    batch = items(4 * MIN_ITEMS_PER_CHUNK)
    expected = [i % 3 != 2 for i in range(len(batch))]
    verdicts = None
    with SignaturePool(2) as pool:
        with trio.CancelScope() as scope:
            scope.cancel()
            verdicts = await pool.verify_async(batch)  # shielded: ends under the cancel
        assert verdicts == expected
        assert (await pool.verify_async(batch)) == expected
