"""Small typed readers for settings that come from the environment.

A value we cannot use stops start-up with one sentence naming the variable (see
``fail``), never with a traceback. Every value can also come from a file:
``NAME_FILE=/run/secrets/name`` wins over
``NAME`` (the usual way to hand secrets to containers and systemd units).
"""

import os
import sys
from typing import NoReturn


def env(name: str, default: str | None = None) -> str | None:
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as exc:
            fail(f"{name}_FILE points to {path}, which cannot be read ({exc.strerror}).")
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value


def envstr(name: str, default: str) -> str:
    return env(name, default)  # type: ignore[return-value]


def envbool(name: str, default: bool) -> bool:
    value = env(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    fail(f"{name} must be true or false (1/0, yes/no, on/off), not {value!r}.")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    value = env(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        fail(f"{name} must be a whole number, not {value!r}.")
    if minimum is not None and number < minimum:
        fail(f"{name} must be at least {minimum}, not {number}.")
    return number


def envlist(name: str, default: list[str]) -> list[str]:
    value = env(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def fail(message: str) -> NoReturn:
    """Stop start-up with one sentence on stderr and exit status 2, no traceback."""
    sys.stderr.write(f"Privacy Portal cannot start: {message}\n")
    sys.exit(2)
