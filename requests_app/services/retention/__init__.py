"""Retention: what is purged once a request has ended (identities, files, expired packages, old codes), and when."""
