"""What verifying a request needs, by right (part of the rule table:
requests_app/rules): data points, degrees of certainty, guardians, the period a
Right to Know covers."""

from enum import Enum

from django.utils.translation import gettext_lazy as _

# --- Request types --------------------------------------------------------------
# Adding a type is one entry in REQUEST_TYPES: forms, choices, verification and
# deadlines all read this table.


class Verification(Enum):
    NONE = "none"  # opt-outs (CCPA regs §7026)
    TWO_POINTS = "two data points"  # categories (§7062(b))
    THREE_POINTS_AND_DECLARATION = "three data points and a signed declaration"  # §7062(c)
    SENSITIVITY = "rises with the sensitivity of the data"  # deletion (§7062(d))
    TWO_POINTS_EXCLUDING_CORRECTED = "two data points, not the field being corrected"


# Data points that must match what the business holds, per level (§7062). The
# confirmed email address counts as one when a source holds a record under it.
# Deletion: 2 by default ("reasonable degree of certainty", §7062(d)); a privacy
# office holding sensitive data raises it here.
REQUIRED_POINTS = {
    Verification.NONE: 0,
    Verification.TWO_POINTS: 2,
    Verification.THREE_POINTS_AND_DECLARATION: 3,
    Verification.SENSITIVITY: 2,  # 3 when sensitive data would be deleted: below
    Verification.TWO_POINTS_EXCLUDING_CORRECTED: 2,
}
# Deletion (§7062(d)): the standard rises with the sensitivity of the data. When a
# source a deletion would reach holds sensitive personal information (CCPA
# §1798.140(ae); fideslang keys, a prefix covers its children), 3 points are
# needed instead of 2: wrongly deleting such data harms the person most.
SENSITIVE_DELETION_POINTS = 3
SENSITIVE_CATEGORY_PREFIXES = (
    "user.government_id",
    "user.financial",
    "user.authorization",
    "user.biometric",
    "user.health_and_medical",
    "user.location.precise",
    "user.demographic.race_ethnicity",
    "user.demographic.religious_belief",
    "user.demographic.political_opinion",
    "user.demographic.sexual_orientation",
    "user.sensor",
    "user.content.private",
)
# --- Manual verification (staff) ------------------------------------------------
# The degree of certainty each right needs (CCPA regs §7060(a), §7062): a
# "reasonable degree" for categories (§7062(b)), a "reasonably high degree" for
# specific pieces and portability (§7062(c): 3 points and a signed declaration),
# and for a deletion the degree rises with the sensitivity of the data (§7062(d)):
# reasonable, reasonably high when a source it reaches holds sensitive data.


class Certainty(Enum):
    REASONABLE = "reasonable"
    REASONABLY_HIGH = "reasonably_high"

    @property
    def label(self) -> str:
        return str(CERTAINTY_LABELS[self])

    @property
    def rank(self) -> int:
        return list(Certainty).index(self) + 1


CERTAINTY_LABELS = {
    Certainty.REASONABLE: _("A reasonable degree of certainty"),
    Certainty.REASONABLY_HIGH: _("A reasonably high degree of certainty"),
}
CERTAINTY_NEEDED = {
    Verification.NONE: None,
    Verification.TWO_POINTS: Certainty.REASONABLE,  # §7062(b)
    Verification.THREE_POINTS_AND_DECLARATION: Certainty.REASONABLY_HIGH,  # §7062(c)
    Verification.SENSITIVITY: Certainty.REASONABLE,  # §7062(d); sensitive data: below
    Verification.TWO_POINTS_EXCLUDING_CORRECTED: Certainty.REASONABLE,
}
SENSITIVE_DELETION_CERTAINTY = Certainty.REASONABLY_HIGH  # §7062(d)
CERTAINTY_CITATION = {
    Certainty.REASONABLE: "CCPA regs §7062(b)",
    Certainty.REASONABLY_HIGH: "CCPA regs §7062(c)",
}
# The data points staff must have checked to record each degree (§7062(b), (c)).
CERTAINTY_POINTS = {Certainty.REASONABLE: 2, Certainty.REASONABLY_HIGH: 3}
# A request for specific pieces verified below its degree but at least at this one
# may be answered as a request for categories instead (§7062(c), §7024).
CATEGORIES_FALLBACK = "know_categories"

# A parent or guardian may act for a child under this age on the day the request
# is filed, once verified as the child's parent or guardian (CCPA regs §7070;
# Civ. Code §1798.120(c): opt-in consent to sell or share a child's data).
GUARDIAN_CHILD_UNDER = 13


# The earliest date a Right to Know request may reach back to (§1798.130(a)(2)(B)).
KNOW_EARLIEST = "2022-01-01"
# How far back a Right to Know request reaches by default, where the jurisdiction
# limits it (JurisdictionRules.know_period: California); the person may ask for
# everything since KNOW_EARLIEST with one click, and staff may widen it (desk).
KNOW_DEFAULT_MONTHS = 12
