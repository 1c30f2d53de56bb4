"""A person's choices on the preference page: ledger entries, and the opt-out requests that carry withdrawals to sources and third parties."""
