"""The consent ledger (grants and withdrawals, append-only) and the disclosure log read from the sources."""
