"""The EVM side of the bridge (docs/BRIDGE.md): the Vyper contracts' compiled artifacts, the
EIP-712 vouchers the validators sign (``evm.voucher``, pure) and the JSON-RPC calls that deploy
the contracts, read deposits and submit withdrawals (``evm.chain``, web3.py, blocking).
"""
