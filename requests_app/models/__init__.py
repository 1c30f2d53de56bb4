from requests_app.models.audit import AuditEvent
from requests_app.models.privacy_request import (
    Actor,
    DenialReason,
    FiledBy,
    Channel,
    Identity,
    PrivacyRequest,
    State,
)

__all__ = [
    "Actor",
    "AuditEvent",
    "Channel",
    "DenialReason",
    "FiledBy",
    "Identity",
    "PrivacyRequest",
    "State",
]
