"""Which connector serves which kind of source, and validation of a source at
save time (so that nothing runs on a broken configuration)."""

import os

from django.core.exceptions import ValidationError

from requests_app.sources.categories import is_category


def connector_for(source):
    from requests_app.sources.http import HttpConnector
    from requests_app.sources.manual import ManualConnector
    from requests_app.sources.sql import SqlConnector

    return {"sql": SqlConnector, "http": HttpConnector, "manual": ManualConnector}[
        source.kind](source)


def validate_source(source) -> None:
    """Raise ValidationError naming each problem (with map line numbers)."""
    from requests_app.sources.datamap import DatasetMapError, parse
    from requests_app.sources.sql import SqlConnector

    errors: dict[str, list[str]] = {}
    bad = [c for c in source.categories or [] if not is_category(c)]
    if bad:
        errors["categories"] = [f"`{c}` is not a data category of the fideslang taxonomy"
                                for c in bad]
    if source.kind == "sql":
        if not source.connection_env:
            errors.setdefault("connection_env", []).append(
                "Name the environment variable that holds the DSN.")
        elif not os.environ.get(source.connection_env):
            errors.setdefault("connection_env", []).append(
                f"The environment variable {source.connection_env} is not set on this host.")
        try:
            parse(source.dataset_map)
        except DatasetMapError as exc:
            errors["dataset_map"] = exc.messages
        else:
            if "connection_env" not in errors:
                problems = SqlConnector(source).check()
                if problems:
                    errors["dataset_map"] = problems
    elif source.kind == "http":
        if not source.url:
            errors["url"] = ["An HTTP source needs a URL."]
        elif not source.url.startswith("https://") and source.verify_tls:
            errors["url"] = ["Use https://, or turn off TLS verification for a local service."]
        if not source.secret_env:
            errors["secret_env"] = ["Name the environment variable that holds the HMAC secret."]
    elif source.kind == "manual" and source.owner_id is None:
        errors["owner"] = ["A manual source needs an owner to do the work."]
    if errors:
        raise ValidationError(errors)
