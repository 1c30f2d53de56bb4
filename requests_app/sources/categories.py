"""Data categories from Fides' open taxonomy (fideslang), so dataset maps speak the
same vocabulary as Fides and other tools.

Some categories are never disclosed to the consumer, only said to be held
(CCPA regs §7024(d)): government ids, financial account numbers, medical ids,
credentials and security answers, biometrics.
"""

from functools import cache

from fideslang.default_taxonomy import DEFAULT_TAXONOMY

NEVER_DISCLOSE_PREFIXES = (
    "user.government_id",
    "user.financial.bank_account",
    "user.financial.credit_card",
    "user.health_and_medical.record_id",
    "user.health_and_medical.insurance_beneficiary_id",
    "user.authorization",
    "user.biometric",
)

WITHHELD = "[held, not disclosed]"


@cache
def taxonomy() -> dict[str, str]:
    """Every data category key with its human name."""
    return {c.fides_key: c.name or c.fides_key for c in DEFAULT_TAXONOMY.data_category}


def is_category(key: str) -> bool:
    return key in taxonomy()


def under(key: str, prefixes) -> bool:
    """Whether a category key is one of `prefixes` or below one (user.financial
    holds user.financial.bank_account, not user.financials)."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


@cache
def never_disclosed(key: str) -> bool:
    return under(key, NEVER_DISCLOSE_PREFIXES)


def label(key: str) -> str:
    return taxonomy().get(key, key)
