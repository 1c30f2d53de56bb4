"""The opt-out report for auditors: per purpose and month of receipt, how many
opt-outs were received, honoured on time, honoured late, and still open (and of
those, overdue); with the third parties told and how many confirmed.

An opt-out is honoured when every source it was pushed to confirmed it (the
request completed); on time when that happened on or before its due date."""

from collections import defaultdict

from django.db.models import Prefetch
from django.utils import timezone

from requests_app.models import PrivacyRequest, Purpose, ThirdPartyNotice
from requests_app.models.privacy_request import FINAL_STATES
from requests_app.rules import OPT_OUT_TYPES

COLUMNS = ["month", "purpose", "received", "honoured_on_time", "honoured_late", "open",
           "overdue", "closed_otherwise", "third_parties_told", "third_parties_confirmed"]


def report(year: int) -> list[dict]:
    today = timezone.localdate()
    rows: dict[tuple, dict] = defaultdict(lambda: dict.fromkeys(COLUMNS[2:], 0))
    requests = (PrivacyRequest.objects.filter(request_type__in=OPT_OUT_TYPES,
                                              received_at__year=year)
                .only("request_type", "received_at", "responded_at", "state", "due_on",
                      "extended_due_on", "appeal_due_on", "denial_reason")
                .prefetch_related(Prefetch("purposes", Purpose.objects.only("name")),
                                  Prefetch("third_party_notices",
                                           ThirdPartyNotice.objects.only("state", "request_id"))))
    for request in requests.iterator(chunk_size=2000):
        month = timezone.localtime(request.received_at).strftime("%Y-%m")
        names = [p.name for p in request.purposes.all()] or [str(request.type_rules.label)]
        for name in names:
            row = rows[(month, name)]
            row["received"] += 1
            if (request.state in ("completed", "closed") and request.responded_at
                    and not request.denial_reason):
                done_on = timezone.localtime(request.responded_at).date()
                row["honoured_on_time" if done_on <= request.response_due_on
                    else "honoured_late"] += 1
            elif request.state in FINAL_STATES or request.denial_reason:  # a denial, even overturned
                row["closed_otherwise"] += 1
            else:
                row["open"] += 1
                row["overdue"] += today > request.current_due_on  # an appeal: its own date
            for notice in request.third_party_notices.all():
                row["third_parties_told"] += notice.state != "pending"
                row["third_parties_confirmed"] += notice.state == "confirmed"
    return [{"month": month, "purpose": name, **counts}
            for (month, name), counts in sorted(rows.items())]
