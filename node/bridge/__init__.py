"""A validator's bridge duties (docs/BRIDGE.md): ``duties.py`` decides from the committed
state and what the EVM chain shows which transactions to send; ``service.py`` does the I/O
(web3.py in worker threads, the node's mempool); ``keyfile.py`` keeps the secp256k1 key."""
