"""The rule tables a privacy office may change: request types, the deadlines of
each jurisdiction and what its answers hold back. Every number the law gives lives here and nowhere else.

Each jurisdiction names the provisions its figures come from: confirm them
against the official text before relying on them (no legal advice is implied).
Two choices are ours, not a statute's, and lean strict: opt-outs outside California
get California's 15 business days, and an unknown jurisdiction gets the earliest
date of any row (see deadlines.py).
"""

from dataclasses import dataclass, field

from django.utils.translation import gettext_lazy as _

from requests_app.rules.periods import (  # noqa: F401 (the table's names)
    ANY_US_STATE_DAYS,
    CALIFORNIA_DAYS,
    Calendar,
    Calendars,
    EU_AND_UK,
    EU_AND_UK_DAYS,
    Period,
    US_FEDERAL,
    US_STATES,
    Unit,
    WEEKDAYS_ONLY,
    business_days,
    days,
    months,
    us_state,
)
from requests_app.rules.verification import (  # noqa: F401 (the table's names)
    CATEGORIES_FALLBACK,
    CERTAINTY_CITATION,
    CERTAINTY_LABELS,
    CERTAINTY_NEEDED,
    CERTAINTY_POINTS,
    Certainty,
    GUARDIAN_CHILD_UNDER,
    KNOW_DEFAULT_MONTHS,
    KNOW_EARLIEST,
    REQUIRED_POINTS,
    SENSITIVE_CATEGORY_PREFIXES,
    SENSITIVE_DELETION_CERTAINTY,
    SENSITIVE_DELETION_POINTS,
    Verification,
)
from requests_app.rules.withholding import (  # noqa: F401 (the table's names)
    CCPA_WITHHELD_PREFIXES,
    CREDENTIAL_PREFIXES,
    WITHHELD_CREDENTIALS,
    WITHHELD_FOR_SECURITY_US,
    WITHHELD_JURISDICTION_UNKNOWN,
    WITHHELD_UNDER_CCPA,
    WITHHOLDINGS,
    Withholding,
    _US_WITHHELD,
)

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
