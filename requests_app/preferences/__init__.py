"""The consumer's preference page, its signed links and codes, Global Privacy Control, third parties' confirmations."""
