"""Retention's periodic tasks (what is purged and when: purge.py)."""

from celery import shared_task

from requests_app.services.retention import orphans, purge


@shared_task
def purge_expired_identities() -> int:
    """Daily: identities, evidence and files of requests past retention."""
    return purge.purge_all()


@shared_task
def purge_expired_packages() -> int:
    """Periodic: packages whose download link expired are deleted (the row stays);
    old one-time codes and the permission files of ended requests go."""
    return purge.purge_expired_packages()


@shared_task
def sweep_orphan_package_files() -> int:
    """Hourly: package files no row points at, unchanged for an hour, are removed
    (the count is audited)."""
    return orphans.sweep_orphan_package_files()
