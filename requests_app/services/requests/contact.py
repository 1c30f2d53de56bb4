"""A requester with no email address may give one later (by letter or on the phone):
staff add it on the desk, audited with the address hashed. Later notices go by
email; letters already queued stay on the "letters to send" page. The address is
counted for repeat requests at once (Identity.email_hash, as at filing: staff took
it from the person, as an intake with an email)."""

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils.translation import gettext as _

from requests_app.models import Actor, Identity
from requests_app.models.privacy_request import TransitionInputError
from requests_app.services.audit.events import hash_value, record_event
from requests_app.services.requests.lifecycle import TransitionRefused

WORK = "requests_app.work_request"


def do_add_email(request_id: int, email: str, *, by) -> Identity:
    if not by.has_perm(WORK):
        raise TransitionRefused(_("You do not have permission for this step."))
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise TransitionInputError(_("Enter a valid email address.")) from None
    if len(email) > Identity._meta.get_field("email").max_length:
        raise TransitionInputError(_("That email address is too long."))
    with transaction.atomic(durable=True):
        identity = (Identity.objects.select_for_update(of=("self",)).select_related("request")
                    .filter(request_id=request_id).first())
        if identity is None:
            raise TransitionInputError(_("The identity of this request was purged."))
        if identity.email:
            raise TransitionInputError(_("This request has an email address already."))
        identity.email, identity.email_hash = email, hash_value(email)
        identity.save(update_fields=["email", "email_hash"])
        record_event("request.email_added", actor=Actor.staff(by), request=identity.request,
                     data={"email": hash_value(email)})
    return identity
