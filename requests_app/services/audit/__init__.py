"""The audit trail: events written in the transaction of the change they record, keyed hashes for personal values, the hash chain and its verifier."""
