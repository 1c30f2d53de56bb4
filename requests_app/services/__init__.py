"""Use cases, by domain: each domain package holds the functions that change state (locking, auditing, enqueueing by name on commit) and the Celery tasks that run them."""
