"""Observability addons: token estimates, the request line, the usage ledger, metrics, debug logs,
and the context guard. Each reads the gateway's record in `flow.metadata["qwen"]` (see exchange.py)."""
