"""Matching the data points a consumer gave against what a source holds, for
identity verification (§7060-7062). Values are compared normalised; only the
names of the points that matched ever leave this module (never the values).

    normalise_phone("(555) 010-0100") == normalise_phone("+1 555 010 0100")
"""

import re

POINTS = ("email", "name", "phone", "account_number", "postal_address")


def _tokens(value) -> list[str]:
    return re.findall(r"[^\W_]+", str(value or "").casefold())


def normalise_phone(value) -> str:
    digits = re.sub(r"\D", "", str(value or ""))
    return digits[-10:] if len(digits) >= 7 else ""


def normalise_account(value) -> str:
    return "".join(_tokens(value))


# Words a given value may carry beyond what is held: a title or a middle name; a
# unit, city, state and country. More than that is a list of guesses (a "name" of
# thirty common first and last names would otherwise contain almost anyone's).
NAME_EXTRA_WORDS = 2
ADDRESS_EXTRA_WORDS = 10


def name_matches(given: str, held_parts: list) -> bool:
    given_tokens, held = set(_tokens(given)), set()
    for part in held_parts:
        held.update(_tokens(part))
    if not held:
        return False
    return held == given_tokens or (len(held) >= 2 and held <= given_tokens
                                    and len(given_tokens - held) <= NAME_EXTRA_WORDS)


def address_matches(given: str, held_parts: list) -> bool:
    """Every word and number of the held street line and postal code appears in the
    given address (city, state and country spelled out or not), with few words
    besides."""
    given_tokens = set(_tokens(given))
    held = {t for part in held_parts for t in _tokens(part)}
    return (len(held) >= 2 and held <= given_tokens
            and len(given_tokens - held) <= ADDRESS_EXTRA_WORDS)


def compare(given: dict, held: dict) -> set[str]:
    """The points of `given` (IdentityData.as_dict()) that `held` confirms.
    held: {"phone": [...], "account_number": [...], "name": [[parts], ...],
           "postal_address": [[parts], ...]} (lists: a source may hold several)."""
    matched = {"email"}  # the row was found by the confirmed address
    phone = normalise_phone(given.get("phone"))
    if phone and any(normalise_phone(v) == phone for v in held.get("phone", [])):
        matched.add("phone")
    account = normalise_account(given.get("account_number"))
    if account and any(normalise_account(v) == account for v in held.get("account_number", [])):
        matched.add("account_number")
    if given.get("name") and any(name_matches(given["name"], parts)
                                 for parts in held.get("name", [])):
        matched.add("name")
    if given.get("postal_address") and any(address_matches(given["postal_address"], parts)
                                           for parts in held.get("postal_address", [])):
        matched.add("postal_address")
    return matched
