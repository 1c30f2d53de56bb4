"""Verification data is kept only as long as it serves (issue 15, item 12;
REQUIREMENTS: "Data gathered only to verify is purged once the request closes").

Two moments, swept by the hourly retention task (tasks.purge_expired_packages):

- Verification has ended (the request left "Pending identity verification":
  verified, denied, expired or cancelled): the agent's signed permission file,
  given only so that the agent could be verified, the evidence staff attached
  when they verified by hand (ManualVerification) and a parent's or guardian's
  proof (GuardianDetails) go (purge.py's purge_verification_files).
- The request has ended (closed, cancelled or expired): the phone number, account
  number and postal address go from the identity. They are data points given to
  verify, but sources also look the person up by phone and account number
  (IdentityData.lookup_values) and HTTP sources receive the address while the
  request is fulfilled, so they serve until fulfilment and any appeal of an
  answer before closing are over. A person with no email address is reached by
  post or phone: their postal address and phone stay (with the identity, until
  retention).

What stays: the email address, the name and the other identifiers (retention purges
them with the identity), and the record of the verification: the names of the
points given and matched, the level, the outcome and the dates."""

from django.db import transaction
from django.db.models import Q

from requests_app.models import Actor, Identity
from requests_app.models.privacy_request import FINAL_STATES
from requests_app.services.audit.events import record_event

VERIFY_ONLY_FIELDS = ("phone", "account_number", "postal_address")
CONTACT_FIELDS = ("phone", "postal_address")  # kept when there is no email address


def fields_to_purge(identity) -> list[str]:
    keep = () if identity.email.strip() else CONTACT_FIELDS
    return [f for f in VERIFY_ONLY_FIELDS if f not in keep and getattr(identity, f)]


def purge_verification_points() -> int:
    """Blank the points given to verify on the identities of ended requests; one
    audit event per request naming the fields (never their values)."""
    given = Q(account_number__gt="") | (Q(email__gt="") & (Q(phone__gt="")
                                                          | Q(postal_address__gt="")))
    candidates = (Identity.objects.filter(given, request__state__in=FINAL_STATES)
                  .values_list("pk", flat=True))
    count = 0
    for pk in candidates:
        with transaction.atomic():
            identity = Identity.objects.select_for_update().select_related("request").get(pk=pk)
            fields = fields_to_purge(identity)
            if not fields or identity.request.state not in FINAL_STATES:
                continue
            Identity.objects.filter(pk=pk).update(**{f: "" for f in fields})
            record_event("request.verification_data_purged", actor=Actor.system(),
                         request=identity.request, data={"fields": fields})
        count += 1
    return count
