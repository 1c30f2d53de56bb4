"""What an answer says about the person besides their records: the categories held
about them (a Right to Know of categories), where each came from, why it is used
and which categories of third parties receive it; the period an answer covers and
the sources that could not keep to it; and the facts a GDPR access answer gives
(Art. 15(1)(a)-(h), 15(2)). Read from the request's gathering runs and from the
registry (DataSource, ThirdParty), never from every source of the registry: an
answer is about this person."""

from django.conf import settings

from requests_app.models.sources import origin_labels
from requests_app.rules import GDPR_REMEDIES, JURISDICTIONS, remedies_text
from requests_app.sources import categories as cats
from requests_app.sources.registry import connector_class


def held_categories(runs) -> dict[str, list]:
    """{data category: [the runs' sources holding it for this person]}: the
    categories of the columns of every collection in which a run found records. A
    source whose records carry no per-field categories (a manual owner's upload)
    holds, when it found any, the categories its registry entry lists."""
    found: dict[str, dict] = {}
    for run in runs:
        source = run.source
        by_field = not connector_class(source.kind).needs_owner
        for info in (run.result.get("collections") or {}).values():
            if not isinstance(info, dict) or not info.get("count"):
                continue
            keys = (set(info.get("columns", {}).values()) if by_field
                    else set(source.categories or []))
            for key in keys:
                found.setdefault(key, {})[source.pk] = source
    return {key: sorted(by_pk.values(), key=lambda s: s.name)
            for key, by_pk in sorted(found.items(), key=lambda kv: cats.label(kv[0]))}


def _recipient_label(party) -> str:
    return str(party.get_recipient_category_display() if party.recipient_category
               else party.get_kind_display())


def _receives(party, category: str) -> bool:
    """Whether a third party receives data of `category` (a party that lists no
    categories receives all that the sources it is linked to hold)."""
    return cats.under(category, party.categories) if party.categories else True


def know_answer(runs) -> dict:
    """The categories held about this person, each with the categories of sources it
    came from, the business purposes and the categories of third parties it goes
    to; and the sources that matched the person."""
    held = held_categories(runs)
    entries = []
    for key, sources in held.items():
        recipients = sorted({_recipient_label(p) for s in sources for p in s.third_parties.all()
                             if _receives(p, key)})
        entries.append({
            "key": key, "name": cats.label(key),
            "sources_of_data": sorted({label for s in sources
                                       for label in origin_labels(s.collected_from)}),
            "purposes": sorted({p for s in sources for p in s.purposes or []}),
            "third_party_categories": recipients,
            "held_in": [s.name for s in sources]})
    matched = sorted({s for sources in held.values() for s in sources}, key=lambda s: s.name)
    return {"categories": entries,
            "sources": [{"name": s.name, "purposes": s.purposes, "retention": s.retention,
                         "collected_from": origin_labels(s.collected_from)}
                        for s in matched]}


def unfiltered_sources(runs, period) -> list[str]:
    """With a period asked for: the sources that could not filter by date (their
    run's result says the period was not applied), so everything they hold is in."""
    if not period:
        return []
    return sorted({run.source.name for run in runs
                   if run.result.get("period_applied") is not True})


def gdpr_facts(request, runs) -> dict | None:
    """The facts of GDPR Art. 15(1) and 15(2) an access answer of a jurisdiction
    that asks for them gives (rules.JurisdictionRules.access_facts), else None."""
    rules = JURISDICTIONS.get(request.jurisdiction)
    if rules is None or not rules.access_facts:
        return None
    sources = sorted({run.source for run in runs}, key=lambda s: s.name)
    recipients = sorted({(p.name, _recipient_label(p)) for s in sources
                         for p in s.third_parties.all()})
    return {
        "purposes": [{"source": s.name, "purposes": s.purposes} for s in sources],
        "recipients": [{"name": n, "category": c} for n, c in recipients],
        "retention": [{"source": s.name, "retention": s.retention} for s in sources],
        "origins": [{"source": s.name,
                     "from": [label for code, label in zip(s.collected_from or [],
                                                          origin_labels(s.collected_from))
                              if code != "direct"],
                     "detail": s.origin_detail}
                    for s in sources if set(s.collected_from or []) - {"direct"}
                    or s.origin_detail],
        "automated_decisions": [{"source": s.name, "logic": s.automated_decisions}
                                for s in sources if s.automated_decisions.strip()],
        "authority": settings.SUPERVISORY_AUTHORITY,
        "remedies": remedies_text(GDPR_REMEDIES, settings.SUPERVISORY_AUTHORITY),
    }
