"""Downloads: the consumer's packages, offered once the request is answered, each
link valid for DOWNLOAD_LINK_DAYS and DOWNLOAD_MAX_COUNT downloads, each download
counted atomically and audited."""

import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from requests_app.models import Actor, DownloadEvent, Package, PrivacyRequest, State
from requests_app.services.audit.events import record_event


def downloadable(request: PrivacyRequest):
    """The request's packages a consumer may download now."""
    if request.responded_at is None or request.state not in (
            State.COMPLETED, State.CLOSED, State.UNDER_APPEAL, State.APPEAL_DENIED):
        return []
    return list(Package.objects.filter(request=request, purged_at=None).exclude(sha256=""))


def offer(package: Package) -> Package:
    """The first offer of a package starts its DOWNLOAD_LINK_DAYS."""
    if package.expires_at is None:
        expires = timezone.now() + datetime.timedelta(days=settings.DOWNLOAD_LINK_DAYS)
        Package.objects.filter(pk=package.pk, expires_at=None).update(
            expires_at=expires, released_at=timezone.now())
        package.refresh_from_db()
    return package


class DownloadRefused(Exception):
    pass


def do_count_download(package_id: int, ip_hash: str) -> Package:
    """Count one download, atomically (at most DOWNLOAD_MAX_COUNT), and audit it."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        updated = Package.objects.filter(
            pk=package_id, purged_at=None, expires_at__gt=now,
            download_count__lt=settings.DOWNLOAD_MAX_COUNT,
        ).update(download_count=F("download_count") + 1)
        if not updated:
            raise DownloadRefused
        package = Package.objects.select_related("request").get(pk=package_id)
        DownloadEvent.objects.create(package=package, ip_hash=ip_hash)
        record_event("package.downloaded", actor=Actor.consumer(), request=package.request,
                     data={"package": package.pk, "kind": package.kind,
                           "count": package.download_count})
    return package
