"""A package's row is claimed before its file is written (packages.build), so two
builds at the same moment (two checks each queueing build_results) write one file:
the second finds the claim and leaves the package, and the request, to the first.

A claim is a Package row with an empty sha256. While its builder writes, a pulse
thread renews the claim's created_at every third of SOURCE_RUN_STALE_SECONDS (as a
source run's attempt beats its heart), so only the claim of a builder that died
goes quiet; the next build takes a quiet claim over. A builder whose claim was
taken over, or discarded by a retry, learns it from its pulse or its final update:
it drops its own file and writes nothing more.
"""

import contextlib
import datetime
import logging
import secrets
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from requests_app.models import Package
from requests_app.services.fulfilment.pulse import Pulse

log = logging.getLogger(__name__)


class BuildingElsewhere(Exception):
    """Another worker holds the claim on this package (or took it over): that worker
    finishes the package and the request, this one leaves both alone."""


def stale_after() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.SOURCE_RUN_STALE_SECONDS)


def claim(request, kind) -> tuple[Package, bool]:
    """(the package, whether the caller must write it): a built package is returned
    as it is; a purged one of an earlier round, or a quiet claim, makes room for a
    new claim. Raises BuildingElsewhere while a live claim exists."""
    try:
        with transaction.atomic():
            existing = Package.objects.select_for_update().filter(
                request=request, kind=kind).first()
            if existing is not None and existing.purged_at is None:
                if existing.sha256:
                    return existing, False
                if existing.created_at > timezone.now() - stale_after():
                    raise BuildingElsewhere(existing.path)
                log.info("package %s: its builder went quiet, taken over", existing.pk)
                (Path(settings.MEDIA_ROOT) / existing.path).unlink(missing_ok=True)
            if existing is not None:
                existing.delete()
            relative = f"packages/{request.reference}/{kind}-{secrets.token_hex(8)}.zip.enc"
            return Package.objects.create(
                request=request, kind=kind, filename=f"{request.reference}-{kind}.zip",
                path=relative, content_type="application/zip", size=0, sha256=""), True
    except IntegrityError:  # claimed at the same moment by another worker
        raise BuildingElsewhere(kind) from None


def _ours(package_id: int):
    return Package.objects.filter(pk=package_id, sha256="", purged_at=None)


def finish(package_id: int, size: int, sha256: str) -> bool:
    """Record the written file on the claim; False if the claim is no longer ours."""
    return bool(_ours(package_id).update(size=size, sha256=sha256, created_at=timezone.now()))


def release(package_id: int) -> None:
    """Drop a claim whose file could not be written, so the next build goes ahead at
    once (if the database answers: else the claim goes quiet and is taken over)."""
    with contextlib.suppress(DatabaseError, TransactionManagementError):
        Package.objects.filter(pk=package_id, sha256="").delete()


def pulse(package_id: int) -> Pulse:
    """A pulse that renews the claim (its `lost` is set when the claim is gone)."""
    return Pulse(lambda: bool(_ours(package_id).update(created_at=timezone.now())),
                 f"package-{package_id}")
