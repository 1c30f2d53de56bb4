"""Data categories from Fides' open taxonomy (fideslang), so dataset maps speak the
same vocabulary as Fides and other tools.

Which categories an answer holds back (only says are held) depends on the
request's jurisdiction: rules/ (JurisdictionRules.withheld). A value held back
is replaced by WITHHELD before anything is written (sources/records.py).
"""

from functools import cache

from fideslang.default_taxonomy import DEFAULT_TAXONOMY

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


def label(key: str) -> str:
    return taxonomy().get(key, key)
