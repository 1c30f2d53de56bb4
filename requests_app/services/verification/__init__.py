"""Verification: one-time codes, the portal's submissions and their evidence, and the identity check against the sources."""
