"""Package files no row points at, swept away.

A package's row is claimed before its file is written (fulfilment/packages.py), so
a build no longer leaves a file behind by losing a race; but a worker killed while
it writes leaves its temporary file (`.<name>.<random>`), a claim taken over after
its builder stalled leaves the stalled builder's file, and files written before
builds claimed first are still on disk. None of them is ever downloaded, and
retention purges only the files rows point at: this sweep removes every file under
MEDIA_ROOT/packages/ that no live package row references and that has not been
written to for ORPHAN_AGE (a file being written is touched as it grows, and its
row exists before it does). The count is audited. (Folders stay: a build may be
about to write into one.)
"""

import datetime
import logging
import time
from pathlib import Path

from django.conf import settings

from requests_app.models import Actor, Package
from requests_app.services.audit.events import record_event

log = logging.getLogger(__name__)

ORPHAN_AGE = datetime.timedelta(hours=1)


def sweep_orphan_package_files(now: float | None = None) -> int:
    """Remove the orphan package files; returns how many went."""
    media = Path(settings.MEDIA_ROOT)
    root = media / "packages"
    if not root.is_dir():
        return 0
    cutoff = (time.time() if now is None else now) - ORPHAN_AGE.total_seconds()
    # Read before the walk: a row created after this has a file younger than the cutoff.
    referenced = set(Package.objects.filter(purged_at=None).values_list("path", flat=True))
    removed = 0
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.relative_to(media).as_posix() in referenced:
            continue
        try:
            if path.lstat().st_mtime > cutoff:
                continue
            path.unlink()
        except FileNotFoundError:  # gone meanwhile
            continue
        removed += 1
    if removed:
        record_event("package.orphan_files_removed", actor=Actor.system(),
                     data={"files": removed, "older_than_hours": ORPHAN_AGE.total_seconds() / 3600})
        log.info("retention: removed %s orphan package files", removed)
    return removed
