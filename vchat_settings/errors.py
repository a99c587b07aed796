"""How a bad environment variable is reported, by every command that reads settings (the gateway, the launcher,
the adapter CLI): it sits beside ``settings.py``, below all of them, so none imports another's command line."""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def settings_error_line(exc: ValidationError, settings_cls: type[BaseSettings]) -> str:
    """One line naming the first bad setting by its environment variable, and why it is bad."""
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    value = first.get("input")
    shown = "" if isinstance(value, dict) or field.endswith("key") or field.endswith("keys") else f" (got {value!r})"
    return f"invalid setting {prefix}{field.upper()}{shown}: {first['msg']}"


def load_settings(settings_cls: type[SettingsT], prog: str) -> SettingsT:
    """``settings_cls`` from the environment, or exit with ``prog: `` and the one line naming the bad setting."""
    try:
        return settings_cls()
    except ValidationError as exc:
        sys.exit(f"{prog}: {settings_error_line(exc, settings_cls)}")
