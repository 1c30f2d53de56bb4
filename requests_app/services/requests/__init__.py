"""Requests: filing from every door, the lifecycle's steps (do_transition), the staff desk's assignments, notes and intake."""
