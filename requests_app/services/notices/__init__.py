"""Notices: the outbox of consumer emails (rendered from editable templates), source owners' tasks and third parties' notices."""
