"""Which connector serves which kind of source, and validation of a source at
save time (so that nothing runs on a broken configuration)."""

import os
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from requests_app.sources.categories import is_category


def connectors() -> dict:
    """Every kind of source, by its DataSource.Kind value -> its Connector class (what
    it can do is declared there: base.Connector)."""
    from requests_app.sources.http import HttpConnector
    from requests_app.sources.manual import ManualConnector
    from requests_app.sources.sql.connector import SqlConnector

    return {c.kind: c for c in (SqlConnector, HttpConnector, ManualConnector)}


def connector_class(kind: str):
    return connectors()[kind]


def connector_for(source):
    return connector_class(source.kind)(source)


def kinds_that(capability: str) -> list[str]:
    """The kinds whose connector declares `capability` (an attribute of
    base.Connector: "access", "replies_later", "needs_owner"...) or can take part in
    the run action of that name ("gather", "erase"...), for filtering sources by kind."""
    return sorted(kind for kind, cls in connectors().items()
                  if (cls.can(capability) if capability in ACTIONS
                      else getattr(cls, capability)))


def declared_identity_types(sources) -> dict[str, str]:
    """The identity types beyond email, phone and account number that the maps of
    `sources` (enabled DataSources) look people up by, each with its label, for the
    forms that ask people for their identity. A map that does not parse offers none
    (it is refused when saved)."""
    from requests_app.sources.datamap import DatasetMapError, parse

    types: dict[str, str] = {}
    for source in sources:
        if not connector_class(source.kind).has_map or not source.dataset_map:
            continue
        try:
            declared = parse(source.dataset_map).identity_types()
        except DatasetMapError:
            continue
        for name, label in declared.items():
            types.setdefault(name, label)
    return dict(sorted(types.items()))


# How the request's own identity fields are named in words.
_FIELD_WORDS = {"email": "an email address", "phone": "a phone number",
                "account_number": "an account number"}


def unreachable_identity(sources, identity) -> str | None:
    """Why none of `sources` can look the person up, in words, when the request
    gives only identity types that no source's map looks people up by (a phone
    number, where every map looks up a loyalty id); None when one can, or when a
    source without a map (an HTTP service, a manual owner) may search by anything,
    or a map does not parse (its run fails, saying why)."""
    from requests_app.sources.datamap import DatasetMapError, parse

    held: dict[str, list[str]] = {}
    labels: dict[str, str] = {}
    for source in sources:
        if not connector_class(source.kind).has_map:
            return None
        try:
            dataset_map = parse(source.dataset_map)
        except DatasetMapError:
            return None
        labels |= dataset_map.identity_types()
        for name in sorted({f for t in dataset_map.tables.values()
                            for f, _c in t.identity_columns}):
            held.setdefault(name, []).append(source.name)
    supplied = sorted(identity.lookup_values())
    if not held or set(supplied) & set(held):
        return None

    def words(name):
        return _FIELD_WORDS.get(name) or f"a {labels.get(name, name)} ({name})"

    gives = " and ".join(words(n) for n in supplied) or "nothing to look a person up by"
    wanted = "; ".join(f"{words(n)} in {', '.join(held[n])}" for n in sorted(held))
    return (f"No source can look this person up: the request gives {gives}, and no source "
            f"looks people up by {'that' if len(supplied) < 2 else 'any of these'}. The "
            f"sources look people up by {wanted}, which the request does not give.")


# The actions of a run (SourceRun.Action), which Connector.can answers for.
ACTIONS = ("gather", "plan_erasure", "erase", "correct", "opt_out")


# The portal's own secrets: a source may not name them as its DSN or HMAC secret.
PORTAL_VARIABLES = {
    "SECRET_KEY", "FILE_ENCRYPTION_KEY", "IDENTITY_HASH_KEY", "DATABASE_URL",
    "CELERY_BROKER_URL", "EMAIL_HOST_PASSWORD", "EMAIL_HOST_USER",
}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _variable_problem(name: str) -> str | None:
    base = name.removesuffix("_FILE")
    if base in PORTAL_VARIABLES:
        return f"{name} holds one of the portal's own secrets; use a variable of the source's own."
    return None


def validate_source(source) -> None:
    """Raise ValidationError naming each problem (with map line numbers)."""
    from requests_app.sources.datamap import DatasetMapError, parse
    from requests_app.sources.sql.connector import SqlConnector

    errors: dict[str, list[str]] = {}
    bad = [c for c in source.categories or [] if not is_category(c)]
    if bad:
        errors["categories"] = [f"`{c}` is not a data category of the fideslang taxonomy"
                                for c in bad]
    for field in ("connection_env", "secret_env"):
        problem = _variable_problem(getattr(source, field) or "")
        if problem:
            errors[field] = [problem]
    if source.kind == "sql" and "connection_env" not in errors:
        if not source.connection_env:
            errors.setdefault("connection_env", []).append(
                "Name the environment variable that holds the DSN.")
        elif not os.environ.get(source.connection_env):
            errors.setdefault("connection_env", []).append(
                f"The environment variable {source.connection_env} is not set on this host.")
        try:
            parse(source.dataset_map)
        except DatasetMapError as exc:
            errors["dataset_map"] = [
                (f"line {line}: " if line else "") + f"source `{source.name}`: {message}"
                for line, message in exc.errors]
        else:
            if "connection_env" not in errors:
                problems = SqlConnector(source).check()
                if problems:
                    errors["dataset_map"] = problems
    elif source.kind == "http":
        if not source.url:
            errors["url"] = ["An HTTP source needs a URL."]
        elif not source.url.startswith("https://") and (
                source.verify_tls or urlsplit(source.url).hostname not in LOOPBACK):
            errors["url"] = ["Use https://. Plain http:// is allowed only for a service on "
                             "this host (127.0.0.1), with TLS verification off."]
        if not source.secret_env and "secret_env" not in errors:
            errors["secret_env"] = ["Name the environment variable that holds the HMAC secret."]
    elif connector_class(source.kind).needs_owner and source.owner_id is None:
        errors["owner"] = ["A manual source needs an owner to do the work."]
    if errors:
        raise ValidationError(errors)
