"""After an erasure or an opt-out: the person is suppressed (an erasure) and the third
parties their data went to are told, one tracked notice each."""

from requests_app.models import PrivacyRequest, SourceRun, Suppression, ThirdParty, ThirdPartyNotice
from requests_app.services.audit.events import hash_value
from requests_app.services.consent.ledger import subject_of
from requests_app.services.queue import enqueue_on_commit

Action, RunState = SourceRun.Action, SourceRun.State
SEND_NOTICE = "requests_app.services.notices.tasks.send_third_party_notice"


def after_erasure(request: PrivacyRequest) -> None:
    """Once every source has erased: suppress the person, tell the third parties."""
    identity = request.identity
    # Keyed like the consent ledger's subject: the address, else (a request filed
    # without one) the first other identifier with its type.
    key = identity.email or subject_of(identity)
    Suppression.objects.get_or_create(
        identity_hash=hash_value(key), defaults={"request_reference": request.reference})
    # Only the third parties of sources that held something of this person's.
    erased = [run.source_id for run in
              request.source_runs.filter(action=Action.ERASE, state=RunState.DONE)
              if run.records_found != 0 and run.result.get("outcome") != "impossible"]
    tell(request, ThirdParty.objects.filter(sources__in=erased).distinct())


def tell(request: PrivacyRequest, parties) -> None:
    """One notice per third party, sent after the commit and tracked to confirmation."""
    for party in parties:
        notice, _ = ThirdPartyNotice.objects.get_or_create(request=request, third_party=party)
        if notice.state == ThirdPartyNotice.State.PENDING:
            enqueue_on_commit(SEND_NOTICE, notice.pk)


def is_suppressed(email: str) -> bool:
    """For importers: was this person's data deleted at their request? Then a record
    from an old copy or a partner feed must not be brought back."""
    return Suppression.objects.filter(identity_hash=hash_value(email)).exists()
