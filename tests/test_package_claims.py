"""A package is built once: its row is claimed before its file is written, so two
builds at the same moment (two checks each queueing build_results) leave one row
and one file, never a file no row points at. Files no row references (a killed
builder's, files of older releases) are swept by retention once an hour old, and
the sweep is audited by count."""

import datetime
import os
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from privacyportal.celery import app as celery_app
from requests_app.models import AuditEvent, Package, State
from requests_app.services.fulfilment import claims, packages
from requests_app.services.queue import enqueue
from requests_app.services.retention import orphans
from tests.conftest import approved, race

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def files_of(request) -> list[Path]:
    folder = Path(settings.MEDIA_ROOT) / "packages" / request.reference
    return sorted(p for p in folder.iterdir()) if folder.is_dir() else []


def rebuildable(alice):
    """A know-categories request whose package was built on approval, then purged
    (as a retry of fulfilment does): the next build writes a new one."""
    request = approved("know_categories", alice)
    assert request.state == State.RESULTS_READY
    packages.discard(Package.objects.get(request=request))
    assert files_of(request) == []
    return request


@pytest.mark.django_db(transaction=True)
def test_builds_at_the_same_moment_leave_one_row_and_one_file(alice):
    request = rebuildable(alice)
    results = race(lambda: packages.build(request), n=4)
    built = [r for r in results if isinstance(r, Package)]
    assert built and all(isinstance(r, (Package, packages.BuildingElsewhere)) for r in results)
    (package,) = Package.objects.filter(request=request)
    assert {p.pk for p in built} == {package.pk} and package.sha256
    assert files_of(request) == [Path(settings.MEDIA_ROOT) / package.path]


def test_a_build_while_another_holds_the_claim_writes_nothing(alice):
    request = rebuildable(alice)
    Package.objects.filter(request=request).delete()
    claim = Package.objects.create(request=request, kind="categories", filename="x.zip",
                                   path=f"packages/{request.reference}/categories-claim.zip.enc",
                                   content_type="application/zip")
    with pytest.raises(packages.BuildingElsewhere):
        packages.build(request)
    assert files_of(request) == [] and list(Package.objects.filter(request=request)) == [claim]
    # The task leaves the request to the builder holding the claim.
    from requests_app.models import PrivacyRequest

    PrivacyRequest.objects.filter(pk=request.pk).update(state=State.FULFILLING)
    enqueue("requests_app.services.fulfilment.tasks.build_results", request.pk)
    request.refresh_from_db()
    assert request.state == State.FULFILLING and files_of(request) == []
    claim.delete()  # the claim released: the next build_results builds and moves on
    enqueue("requests_app.services.fulfilment.tasks.build_results", request.pk)
    request.refresh_from_db()
    assert request.state == State.RESULTS_READY and len(files_of(request)) == 1


def test_a_claim_whose_builder_died_is_taken_over(alice, unzip):
    request = rebuildable(alice)
    Package.objects.filter(request=request).delete()
    dead = Package.objects.create(request=request, kind="categories", filename="x.zip",
                                  path=f"packages/{request.reference}/categories-dead.zip.enc",
                                  content_type="application/zip")
    Package.objects.filter(pk=dead.pk).update(
        created_at=timezone.now() - claims.stale_after() - datetime.timedelta(seconds=1))
    package = packages.build(request)
    assert package.pk != dead.pk and package.sha256 and not Package.objects.filter(
        pk=dead.pk).exists()
    assert files_of(request) == [Path(settings.MEDIA_ROOT) / package.path]
    assert "categories.json" in unzip(package).namelist()
    assert packages.build(request).pk == package.pk  # built: a second call returns it


@pytest.mark.django_db(transaction=True)
def test_a_live_builders_claim_is_kept_alive_by_its_pulse_and_a_quiet_one_is_not(alice,
                                                                                settings):
    settings.SOURCE_RUN_STALE_SECONDS = 2
    request = rebuildable(alice)
    Package.objects.filter(request=request).delete()
    package, fresh = claims.claim(request, "categories")
    assert fresh
    pulse = claims.pulse(package.pk)
    pulse.start()
    try:
        time.sleep(3)  # longer than the stale period: the pulse renewed the claim
        with pytest.raises(packages.BuildingElsewhere):
            claims.claim(request, "categories")
    finally:
        pulse.stop()
    time.sleep(2.5)  # no pulse: the claim goes quiet and the next build takes it over
    assert packages.build(request).pk != package.pk
    assert len(files_of(request)) == 1


def test_a_build_that_fails_releases_its_claim_and_leaves_no_file(alice):
    request = rebuildable(alice)
    folder = Path(settings.MEDIA_ROOT) / "packages" / request.reference
    folder.rmdir()
    folder.write_text("not a folder")  # the file cannot be written
    with pytest.raises(OSError):
        packages.build(request)
    assert not Package.objects.filter(request=request).exists()
    folder.unlink()
    package = packages.build(request)  # the next build goes ahead at once
    assert package.sha256 and files_of(request) == [Path(settings.MEDIA_ROOT) / package.path]


def age(path: Path, hours: float) -> None:
    then = time.time() - hours * 3600
    os.utime(path, (then, then))


def test_the_sweep_removes_old_files_no_row_references_and_audits_the_count(alice):
    request = approved("know_categories", alice)
    package = Package.objects.get(request=request)
    live = Path(settings.MEDIA_ROOT) / package.path
    folder = live.parent
    lost = folder / "categories-0123456789abcdef.zip.enc"  # a losing build's file
    killed = folder / ".categories-feed.zip.enc.x1y2z3"  # a killed builder's temporary file
    fresh = folder / "categories-fedcba9876543210.zip.enc"  # being written right now
    elsewhere = Path(settings.MEDIA_ROOT) / "packages" / "PP-OTHER" / "access-00.zip.enc"
    elsewhere.parent.mkdir(parents=True)
    for path in (lost, killed, fresh, elsewhere):
        path.write_bytes(b"PPENC1 old bytes")
    for path in (live, lost, killed, elsewhere):
        age(path, 2)
    assert orphans.sweep_orphan_package_files() == 3
    assert live.exists() and fresh.exists()
    assert not lost.exists() and not killed.exists() and not elsewhere.exists()
    event = AuditEvent.objects.filter(action="package.orphan_files_removed").get()
    assert event.data["files"] == 3 and event.request_id is None
    # A purged package's file that was left behind is an orphan too.
    packages.discard(package)
    live.write_bytes(b"left behind")
    age(live, 2)
    assert orphans.sweep_orphan_package_files() == 1 and not live.exists()
    assert fresh.exists()
    assert orphans.sweep_orphan_package_files() == 0
    assert AuditEvent.objects.filter(action="package.orphan_files_removed").count() == 2


def test_the_sweep_is_a_periodic_task_of_retention():
    name = "requests_app.services.retention.tasks.sweep_orphan_package_files"
    assert name in {entry["task"] for entry in celery_app.conf.beat_schedule.values()}
    orphan = Path(settings.MEDIA_ROOT) / "packages" / "PP-GONE" / "access-00.zip.enc"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"PPENC1 old bytes")
    age(orphan, 2)
    enqueue(name)
    assert not orphan.exists()
