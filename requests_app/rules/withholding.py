"""What an answer holds back, by jurisdiction (part of the rule table:
requests_app/rules)."""

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _


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
