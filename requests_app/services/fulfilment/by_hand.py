"""Packages for a requester with no email address: there is no status page code to
open a download with, so once the request is answered staff take the files from
the desk and send them on a medium they record (a USB stick by registered post,
printed pages...). Recording it releases the packages (audited with the medium's
code; the free words of "other" stay on the row, as they may name a person), and
starts their DOWNLOAD_LINK_DAYS, after which the files are purged as any package."""

import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from requests_app.models import Actor, Package, PrivacyRequest
from requests_app.models.privacy_request import TransitionInputError
from requests_app.services.audit.events import record_event
from requests_app.services.fulfilment.downloads import downloadable
from requests_app.services.requests.lifecycle import TransitionRefused

WORK = "requests_app.work_request"
MEDIA = dict(Package.Medium.choices)


def to_send_by_hand(request: PrivacyRequest) -> list[Package]:
    """The answered request's packages not sent yet, when there is no email address."""
    identity = getattr(request, "identity", None)
    if identity is None or identity.email:
        return []
    return [p for p in downloadable(request) if not p.sent_medium]


def do_record_package_sent(request_id: int, medium: str, detail: str = "", *,
                           by) -> list[Package]:
    if not by.has_perm(WORK):
        raise TransitionRefused(_("You do not have permission for this step."))
    detail = " ".join((detail or "").split())[:200]
    if medium not in MEDIA:
        raise TransitionInputError(_("Choose how the files were sent."))
    if medium == "other" and not detail:
        raise TransitionInputError(_("Describe how the files were sent."))
    now = timezone.now()
    with transaction.atomic(durable=True):
        request = PrivacyRequest.objects.locked(of=("self",)).select_related(
            "identity").get(pk=request_id)
        packages = to_send_by_hand(request)
        if not packages:
            raise TransitionInputError(_("There are no files to send for this request: "
                                         "it is not answered yet, it has an email address, "
                                         "or they were sent already."))
        Package.objects.filter(pk__in=[p.pk for p in packages]).update(
            sent_medium=medium, sent_medium_detail=detail if medium == "other" else "",
            released_at=now,
            expires_at=now + datetime.timedelta(days=settings.DOWNLOAD_LINK_DAYS))
        record_event("package.sent_by_hand", actor=Actor.staff(by), request=request,
                     data={"packages": [p.pk for p in packages],
                           "kinds": [p.kind for p in packages], "medium": medium})
    return list(Package.objects.filter(pk__in=[p.pk for p in packages]))
