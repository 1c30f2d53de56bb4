"""The model: privacy requests and their state machine (privacy_request.py, steps.py), identities, the audit trail, the source registry, the consent ledger, the outbox."""

from requests_app.models.audit import AuditEvent
from requests_app.models.consent import (
    ConsentRecord,
    Disclosure,
    DisclosureScan,
    Purpose,
    PurposeNotice,
)
from requests_app.models.email import OutgoingEmail
from requests_app.models.health import Heartbeat, RateCount
from requests_app.models.portal import DownloadEvent, OneTimeCode, VerificationEvidence
from requests_app.models.sources import (
    DataSource,
    Package,
    SourceRun,
    Suppression,
    ThirdParty,
    ThirdPartyNotice,
)
from requests_app.models.staff import (
    EmailTemplateVersion,
    IntakeRecord,
    RequestNote,
    StaffEmailSettings,
)
from requests_app.models.verification import GuardianDetails, ManualVerification
from requests_app.models.privacy_request import (
    Actor,
    DenialReason,
    FiledBy,
    Channel,
    PrivacyRequest,
    State,
)
from requests_app.models.identity import Identity

__all__ = [
    "Actor",
    "AuditEvent",
    "ConsentRecord",
    "Disclosure",
    "DisclosureScan",
    "Purpose",
    "PurposeNotice",
    "DataSource",
    "DownloadEvent",
    "OneTimeCode",
    "VerificationEvidence",
    "EmailTemplateVersion",
    "GuardianDetails",
    "ManualVerification",
    "Heartbeat",
    "RateCount",
    "IntakeRecord",
    "RequestNote",
    "StaffEmailSettings",
    "Package",
    "SourceRun",
    "Suppression",
    "ThirdParty",
    "ThirdPartyNotice",
    "Channel",
    "DenialReason",
    "FiledBy",
    "Identity",
    "OutgoingEmail",
    "PrivacyRequest",
    "State",
]
