"""The rule tables a privacy office may change: request types, the deadlines of
each jurisdiction and what its answers hold back. Every number the law gives lives here and nowhere else.

Each jurisdiction names the provisions its figures come from: confirm them
against the official text before relying on them (no legal advice is implied).
Two choices are ours, not a statute's, and lean strict: opt-outs outside California
get California's 15 business days, and an unknown jurisdiction gets the earliest
date of any row (see deadlines.py).
"""

from dataclasses import dataclass, field
from enum import Enum

from django.utils.translation import gettext_lazy as _


class Unit(Enum):
    DAYS = "calendar days"
    BUSINESS_DAYS = "business days"
    MONTHS = "months"


@dataclass(frozen=True)
class Period:
    amount: int
    unit: Unit

    def __str__(self) -> str:
        unit = self.unit.value
        return f"{self.amount} {unit[:-1] if self.amount == 1 else unit}"


def days(n: int) -> Period:
    return Period(n, Unit.DAYS)


def business_days(n: int) -> Period:
    return Period(n, Unit.BUSINESS_DAYS)


def months(n: int) -> Period:
    return Period(n, Unit.MONTHS)


# --- Business days ----------------------------------------------------------------
# A business day is a weekday that is not a public holiday. Which holidays count is
# a matter of reading: California's regulations speak of state holidays (CCPA regs
# §7001), a reader may take the federal ones. Each jurisdiction names every calendar
# that could apply (JurisdictionRules.calendars); a day is skipped only when it is a
# holiday in EVERY one of them, so that no reasonable reading gives an earlier date
# than ours. An office adds its own closures in configuration (OFFICE_CLOSURES,
# docs/configuration.md); those are its choice and may move dates later.


@dataclass(frozen=True)
class Calendar:
    """A public-holiday calendar of the `holidays` package: a country, or one of
    its subdivisions (US-CA: California's state holidays, federal ones included)."""

    country: str
    subdiv: str = ""

    def __str__(self) -> str:
        return f"{self.country}-{self.subdiv}" if self.subdiv else self.country


@dataclass(frozen=True)
class Calendars:
    """The calendars that could apply to a jurisdiction's business days, and what
    the lifecycle document calls them. No calendar: weekends only, no holiday skipped."""

    label: str
    calendars: tuple[Calendar, ...] = ()


US_FEDERAL = Calendar("US")
# The 50 states and DC (the territories are not states of "another US state").
US_STATES = tuple("AK AL AR AZ CA CO CT DC DE FL GA HI IA ID IL IN KS KY LA MA MD ME MI MN MO MS "
                  "MT NC ND NE NH NJ NM NV NY OH OK OR PA RI SC SD TN TX UT VA VT WA WI WV WY".split())
# The GDPR row covers the EU member states and the United Kingdom.
EU_AND_UK = tuple("AT BE BG HR CY CZ DK EE FI FR DE GR IE IT LV LT LU MT NL PL PT RO SK SI ES SE "
                  "GB".split())
WEEKDAYS_ONLY = Calendars("weekends only (no holiday skipped)")


def us_state(code: str, name: str) -> Calendars:
    """A state's business days: its own holidays or the federal ones (either reading
    may be taken), so only the days that are holidays in both are skipped."""
    return Calendars(f"US federal ∩ {name} state (US, US-{code})",
                     (US_FEDERAL, Calendar("US", code)))


CALIFORNIA_DAYS = us_state("CA", "California")
ANY_US_STATE_DAYS = Calendars(
    "US federal ∩ every state's and DC's (US, US-AK ... US-WY)",
    (US_FEDERAL, *(Calendar("US", code) for code in US_STATES)))
EU_AND_UK_DAYS = Calendars(
    "every EU member state's ∩ the UK's (AT ... SE, GB)",
    tuple(Calendar(code) for code in EU_AND_UK))


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

# --- Repeat requests ------------------------------------------------------------
# The desk counts a person's requests of each kind received in this many months up
# to the one being worked (matched by the keyed hash of the email address).
REPEAT_WINDOW_MONTHS = 12


@dataclass(frozen=True)
class RepeatLimit:
    """A request may be refused as excessive only when the person made at least
    `at_least` requests of `types` in REPEAT_WINDOW_MONTHS, the refused one included."""

    types: frozenset
    at_least: int
    basis: str


# CCPA §1798.130(b): no duty to answer §1798.110/§1798.115 requests (to know,
# categories or specific pieces) more than twice in 12 months: the third may be
# refused. Elsewhere the law gives no number ("manifestly unfounded or excessive",
# GDPR Art. 12(5)): no minimum is enforced, the count is still recorded.
REPEAT_LIMITS = {
    "CA": RepeatLimit(frozenset({"know_categories", "access", "portability"}), 3,
                      "Civ. Code §1798.130(b)"),
}


def repeat_limit(jurisdiction: str, request_type: str) -> "RepeatLimit | None":
    limit = REPEAT_LIMITS.get(jurisdiction)
    return limit if limit is not None and request_type in limit.types else None


@dataclass(frozen=True)
class RequestType:
    code: str
    label: str
    # The §7102 metrics group this type is counted under.
    metrics_group: str
    verification: Verification
    # Opt-outs run on their own, shorter clock (see JurisdictionRules.opt_out).
    is_opt_out: bool = False
    # Deletions need a Privacy Manager's approval before anything is erased.
    is_deletion: bool = False
    # An opt-out clock of its own, the same in every jurisdiction (None: the
    # jurisdiction's opt-out period applies).
    opt_out_period: Period | None = None
    # What the portal's form gathers towards this right, kept as the request's
    # verification evidence: the period a Right to Know covers, the field a
    # correction changes, and the signed declaration that comes with a request for
    # specific pieces (CCPA regs §7062).
    covers_period: bool = False
    corrects_a_field: bool = False
    takes_declaration: bool = False

    @property
    def plain_label(self) -> str:
        """The right in the words the portal's form uses ("Give me a copy of my
        information"): what every email and the status page show a consumer."""
        return PLAIN_LABELS.get(self.code, self.label)


# The rights in the form's own words. The consumer reads these everywhere (the form,
# the emails, the status page); `label` is the staff's legal name.
PLAIN_LABELS = {
    "know_categories": _("Tell me what kinds of information you hold about me"),
    "access": _("Give me a copy of my information"),
    "portability": _("Give me my information in files I can take to another service"),
    "deletion": _("Delete my information"),
    "correction": _("Correct information that is wrong"),
    "opt_out_sale": _("Do not sell or share my information"),
    "opt_out_partners": _("Do not disclose my information to partners"),
    "limit_sensitive": _("Limit the use of my sensitive information"),
    "opt_out_marketing": _("Stop sending me marketing"),
}


REQUEST_TYPES: dict[str, RequestType] = {
    t.code: t
    for t in [
        RequestType("know_categories", _("Right to know: categories"), "know",
                    Verification.TWO_POINTS, covers_period=True),
        RequestType("access", _("Right to know: specific pieces / access"), "access",
                    Verification.THREE_POINTS_AND_DECLARATION, covers_period=True,
                    takes_declaration=True),
        RequestType("portability", _("Portability"), "access",
                    Verification.THREE_POINTS_AND_DECLARATION, takes_declaration=True),
        RequestType("deletion", _("Deletion"), "delete", Verification.SENSITIVITY,
                    is_deletion=True),
        RequestType("correction", _("Correction"), "correct",
                    Verification.TWO_POINTS_EXCLUDING_CORRECTED, corrects_a_field=True),
        RequestType("opt_out_sale", _("Opt-out of sale or sharing"), "opt_out",
                    Verification.NONE, is_opt_out=True),
        RequestType("opt_out_partners", _("Opt-out of disclosure to partners"), "opt_out",
                    Verification.NONE, is_opt_out=True),
        # §7102(a)(1) counts requests to limit apart from opt-outs of sale/sharing.
        RequestType("limit_sensitive", _("Limit the use of sensitive personal information"),
                    "limit", Verification.NONE, is_opt_out=True),
        # Removal from marketing lists within 10 business days, wherever the person
        # lives (the privacy statement's promise; CAN-SPAM §7704(a)(4)).
        # Not a CCPA right: counted apart, so §7102's opt-out figure stays exact.
        RequestType("opt_out_marketing", _("Stop marketing to me"), "marketing",
                    Verification.NONE, is_opt_out=True, opt_out_period=business_days(10)),
    ]
}


def request_type_choices() -> list[tuple[str, str]]:
    return [(t.code, t.label) for t in REQUEST_TYPES.values()]


OPT_OUT_TYPES = [code for code, t in REQUEST_TYPES.items() if t.is_opt_out]


def opt_out_type_choices() -> list[tuple[str, str]]:
    return [(t.code, t.label) for t in REQUEST_TYPES.values() if t.is_opt_out]


# --- What an answer holds back ---------------------------------------------------
# An access or portability answer holds back these data categories (fideslang keys;
# a prefix covers its children): the package names each kind it holds, where and
# why, never the value. Which apply is the jurisdiction's (JurisdictionRules.withheld);
# the first that covers a category gives the reason.


@dataclass(frozen=True)
class Withholding:
    code: str  # stored with the gathered records: the package reads the reason back
    prefixes: tuple[str, ...]
    basis: str  # why, naming the provision


# CCPA regs §7024(d): SSN, driver's licence and other government ids, financial
# account numbers, health insurance and medical ids, account passwords, security
# questions and answers, biometrics. "The business shall, however, inform the
# consumer with sufficient particularity that it has collected the type of
# information": the package names the category and the table.
CCPA_WITHHELD_PREFIXES = (
    "user.government_id",
    "user.financial.bank_account",
    "user.financial.credit_card",
    "user.health_and_medical.record_id",
    "user.health_and_medical.insurance_beneficiary_id",
    "user.authorization",
    "user.biometric",
)
# Authentication secrets (passwords and their hashes, security answers, tokens,
# biometric templates used to log in): never disclosed in any jurisdiction.
CREDENTIAL_PREFIXES = ("user.authorization",)

WITHHELD_UNDER_CCPA = Withholding(
    "ccpa_7024d", CCPA_WITHHELD_PREFIXES,
    _("California law forbids disclosing this kind of information in an answer; we may "
      "only say that we hold it (CCPA regulations, 11 CCR §7024(d))."))
# Our choice for the other US states (check against each state's text and rules):
# their access rights ask for a copy of the data, but each lets a business protect
# against identity theft and fraud, and an answer holding a person's government
# ids or card numbers is what a thief who passed verification would want. We hold
# back California's list, say that it is held, and staff can give it by other means.
WITHHELD_FOR_SECURITY_US = Withholding(
    "us_security", CCPA_WITHHELD_PREFIXES,
    _("Held back for your security, as California requires (CCPA regulations, 11 CCR "
      "§7024(d)): government ids, account and card numbers, medical ids, credentials "
      "and biometrics are the data identity thieves seek. Your state's law lets us "
      "protect you against identity theft and fraud; ask us if you need these "
      "details and we will find a safe way to give them."))
# GDPR Art. 15(3) gives a copy of the personal data itself: government ids, bank
# and card numbers, health ids and biometrics are disclosed. An authentication
# secret is not: it is the key to the account, not information about the person,
# and putting it in a file to be downloaded would break the security the
# controller owes (Art. 5(1)(f), Art. 32); the answer says it is held.
WITHHELD_CREDENTIALS = Withholding(
    "credentials", CREDENTIAL_PREFIXES,
    _("Authentication secrets (passwords, security answers, login tokens) are never "
      "disclosed: a copy would let anyone who reads it into your account. We must keep "
      "them secure (GDPR Art. 5(1)(f) and Art. 32); you can reset them at any time."))
# A request of no known jurisdiction: California's list, the strictest reading
# (disclosing what a state forbids cannot be undone; holding back can be).
WITHHELD_JURISDICTION_UNKNOWN = Withholding(
    "unknown_jurisdiction", CCPA_WITHHELD_PREFIXES,
    _("We do not know which law applies to your request, so we follow the strictest: "
      "California law forbids disclosing this kind of information (CCPA regulations, "
      "11 CCR §7024(d)). Tell us where you live if your law gives you a copy."))

WITHHOLDINGS: dict[str, Withholding] = {w.code: w for w in [
    WITHHELD_UNDER_CCPA, WITHHELD_FOR_SECURITY_US, WITHHELD_CREDENTIALS,
    WITHHELD_JURISDICTION_UNKNOWN]}
_US_WITHHELD = (WITHHELD_FOR_SECURITY_US,)


# --- Jurisdictions and their deadlines -----------------------------------------


@dataclass(frozen=True)
class JurisdictionRules:
    code: str
    label: str
    # Acknowledge receipt within this period (None: no separate acknowledgment duty).
    acknowledge: Period | None
    # Respond to a request within this period from receipt; the clock never pauses.
    respond: Period
    # One extension, added to the first due date; notice must go out before it.
    extension: Period | None
    # Decide an appeal within this period from its receipt (None: no statutory appeal).
    appeal: Period | None
    # Carry out an opt-out of sale/sharing within this period from receipt.
    opt_out: Period
    # Where a consumer turns after a denial (appeal, regulator, court).
    complaint_text: str = ""
    citations: tuple[str, ...] = field(default_factory=tuple)
    # What an access or portability answer holds back, and why (see Withholding).
    withheld: tuple[Withholding, ...] = (WITHHELD_CREDENTIALS,)
    # Whether a Right to Know answer may cover a period (the KNOW_DEFAULT_MONTHS
    # before the request unless the person asks for more, back to KNOW_EARLIEST:
    # CCPA §1798.130(a)(2)(B), regs §7024(h)). False: all the data held, whatever
    # its date (GDPR Art. 15; the other states' laws give no period either).
    know_period: bool = False
    # Where the person turns when an appeal is denied (after_appeal_text()); never
    # a state Attorney General outside the United States.
    after_appeal: str = ""
    # An access answer states the facts of GDPR Art. 15(1)(a)-(h) and 15(2):
    # purposes, recipients, retention, where the data came from, automated
    # decision-making, the rights and the supervisory authority.
    access_facts: bool = False
    # The holiday calendars its business days may be read against (see Calendars);
    # a new row skips no holiday until it names its own: the earliest dates.
    calendars: Calendars = WEEKDAYS_ONLY


_US_APPEAL_AG = _(
    "You may appeal this decision by replying to this email or through the status page "
    "within a reasonable time. If the appeal is denied, you may contact your state "
    "Attorney General."
)


# Va. Code §59.1-577(C), C.R.S. 6-1-1306(3), Conn. Gen. Stat. §42-518(d), Tex. Bus.
# & Com. Code §541.053: a denied appeal tells how to complain to the Attorney General.
_AG_AFTER_APPEAL = {
    "VA": _("If you disagree, you may submit a complaint to the Virginia Attorney General "
            "(oag.state.va.us)."),
    "CO": _("If you disagree, you may submit a complaint to the Colorado Attorney General "
            "(coag.gov)."),
    "CT": _("If you disagree, you may submit a complaint to the Connecticut Attorney "
            "General (portal.ct.gov/ag)."),
    "TX": _("If you disagree, you may submit a complaint to the Texas Attorney General "
            "(texasattorneygeneral.gov)."),
    "US_OTHER": _("If you disagree, you may contact the Attorney General of your state."),
}


# GDPR Art. 77 (a complaint to a supervisory authority, in particular in the member
# state where the person lives, works or the infringement took place) and Art. 78-79
# (an effective judicial remedy). %(authority)s is the office's lead authority
# (settings.SUPERVISORY_AUTHORITY, docs/configuration.md).
GDPR_REMEDIES = _(
    "You have the right to lodge a complaint with a data protection supervisory "
    "authority (GDPR Article 77): ours is %(authority)s, and you may also complain to "
    "the authority of the country where you live or work or where you believe the law "
    "was broken. You also have the right to an effective judicial remedy against us or "
    "the authority before the courts (GDPR Articles 78 and 79).")
# A request of no known jurisdiction (the portal's "another country"): every route
# a person outside the United States may have, never a state Attorney General.
UNKNOWN_AFTER_APPEAL = _(
    "If you disagree, you may complain to the data protection or consumer protection "
    "authority where you live (in the European Union or the United Kingdom: "
    "%(authority)s, or the authority of your country), or seek a remedy before the "
    "courts.")

JURISDICTIONS: dict[str, JurisdictionRules] = {
    j.code: j
    for j in [
        JurisdictionRules(
            "CA", _("California"),
            acknowledge=business_days(10), respond=days(45), extension=days(45),
            appeal=None, opt_out=business_days(15),
            complaint_text=_(
                "You may file a complaint with the California Privacy Protection Agency "
                "or the California Attorney General."
            ),
            citations=("CCPA regs §7021", "§7026(f)", "Civ. Code §1798.130(a)(2)"),
            withheld=(WITHHELD_UNDER_CCPA,), know_period=True,
            after_appeal=_(
                "If you disagree, you may file a complaint with the California Privacy "
                "Protection Agency (cppa.ca.gov) or the California Attorney General "
                "(oag.ca.gov)."),
            calendars=CALIFORNIA_DAYS,
        ),
        JurisdictionRules(
            "VA", _("Virginia"),
            acknowledge=None, respond=days(45), extension=days(45),
            appeal=days(60), opt_out=business_days(15), complaint_text=_US_APPEAL_AG,
            citations=("Va. Code §59.1-577(B)(1)", "§59.1-577(C)"),
            withheld=_US_WITHHELD, after_appeal=_AG_AFTER_APPEAL["VA"],
            calendars=us_state("VA", "Virginia"),
        ),
        JurisdictionRules(
            "CO", _("Colorado"),
            acknowledge=None, respond=days(45), extension=days(45),
            # C.R.S. 6-1-1306(3)(b): 45 days to decide an appeal (+60 where needed).
            appeal=days(45), opt_out=business_days(15), complaint_text=_US_APPEAL_AG,
            citations=("C.R.S. 6-1-1306(2)", "6-1-1306(3)"),
            withheld=_US_WITHHELD, after_appeal=_AG_AFTER_APPEAL["CO"],
            calendars=us_state("CO", "Colorado"),
        ),
        JurisdictionRules(
            "CT", _("Connecticut"),
            acknowledge=None, respond=days(45), extension=days(45),
            appeal=days(60), opt_out=business_days(15), complaint_text=_US_APPEAL_AG,
            citations=("Conn. Gen. Stat. §42-518(b)", "§42-518(d)"),
            withheld=_US_WITHHELD,
            after_appeal=_AG_AFTER_APPEAL["CT"],
            calendars=us_state("CT", "Connecticut"),
        ),
        JurisdictionRules(
            "TX", _("Texas"),
            acknowledge=None, respond=days(45), extension=days(45),
            appeal=days(60), opt_out=business_days(15), complaint_text=_US_APPEAL_AG,
            citations=("Tex. Bus. & Com. Code §541.052", "§541.053"),
            withheld=_US_WITHHELD, after_appeal=_AG_AFTER_APPEAL["TX"],
            calendars=us_state("TX", "Texas"),
        ),
        JurisdictionRules(
            "US_OTHER", _("Another US state"),
            acknowledge=None, respond=days(45), extension=days(45),
            appeal=days(60), opt_out=business_days(15), complaint_text=_US_APPEAL_AG,
            citations=("state consumer privacy laws modelled on the VCDPA",),
            withheld=_US_WITHHELD,
            after_appeal=_AG_AFTER_APPEAL["US_OTHER"],
            calendars=ANY_US_STATE_DAYS,
        ),
        JurisdictionRules(
            "GDPR", _("European Union or United Kingdom (GDPR)"),
            acknowledge=None, respond=months(1), extension=months(2),
            appeal=None, opt_out=months(1),
            complaint_text=GDPR_REMEDIES, after_appeal=GDPR_REMEDIES, access_facts=True,
            citations=("GDPR Art. 12(3)", "Art. 12(4)", "Art. 15", "Art. 21", "Art. 77-79"),
            withheld=(WITHHELD_CREDENTIALS,),
            calendars=EU_AND_UK_DAYS,
        ),
    ]
}

# The law that gives the right to delete, by jurisdiction, as the deletion report
# cites it to the requester (the provision that also makes us pass the deletion on
# to those we disclosed the data to, where the law has one).
DELETION_LAW = {
    "CA": _("the California Consumer Privacy Act (Cal. Civ. Code §1798.105)"),
    "VA": _("the Virginia Consumer Data Protection Act (Va. Code §59.1-577(A)(3))"),
    "CO": _("the Colorado Privacy Act (C.R.S. 6-1-1306(1)(d))"),
    "CT": _("the Connecticut Data Privacy Act (Conn. Gen. Stat. §42-518(a)(3))"),
    "TX": _("the Texas Data Privacy and Security Act (Tex. Bus. & Com. Code "
            "§541.051(b)(3))"),
    "US_OTHER": _("the consumer privacy law of your state"),
    "GDPR": _("the General Data Protection Regulation (GDPR Article 17, the right to "
              "erasure, and Article 19, telling those we disclosed your data to)"),
}
DELETION_LAW_DEFAULT = _("the privacy law that applies to you")


def deletion_law(jurisdiction: str) -> str:
    return str(DELETION_LAW.get(jurisdiction, DELETION_LAW_DEFAULT))


UNKNOWN = "UNKNOWN"


def jurisdiction_choices() -> list[tuple[str, str]]:
    return [(j.code, j.label) for j in JURISDICTIONS.values()] + [
        (UNKNOWN, _("Unknown"))
    ]


def know_period_applies(jurisdiction: str) -> bool:
    """Whether a Right to Know answer of this jurisdiction may cover a period (else
    everything held, whatever its date). UNKNOWN: no period (no law we know of limits
    it, and more information is the safer error for an access answer)."""
    rules = JURISDICTIONS.get(jurisdiction)
    return rules is not None and rules.know_period


def remedies_text(text: str, authority: str) -> str:
    """A complaint or after-appeal text with the supervisory authority filled in."""
    text = str(text)
    return text % {"authority": authority} if "%(authority)s" in text else text


def after_appeal_text(jurisdiction: str, authority: str) -> str:
    """Where the person turns when their appeal is denied (UNKNOWN: every route a
    person outside the United States may have, never a state Attorney General)."""
    rules = JURISDICTIONS.get(jurisdiction)
    return remedies_text(rules.after_appeal if rules else UNKNOWN_AFTER_APPEAL, authority)


def withheld_under(jurisdiction: str) -> tuple[Withholding, ...]:
    """What an answer to a request of this jurisdiction holds back (UNKNOWN, or a
    code no longer in the table: the strictest list)."""
    rules = JURISDICTIONS.get(jurisdiction)
    return rules.withheld if rules is not None else (WITHHELD_JURISDICTION_UNKNOWN,)


def withholding_for(withheld: tuple[Withholding, ...], category: str) -> Withholding | None:
    """The first of `withheld` that covers a data category (None: disclosed)."""
    for rule in withheld:
        if any(category == p or category.startswith(p + ".") for p in rule.prefixes):
            return rule
    return None


def withheld_anywhere(category: str) -> bool:
    """Whether some jurisdiction's answer holds this category back."""
    return withholding_for(tuple(WITHHOLDINGS.values()), category) is not None
