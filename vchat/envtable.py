"""Renders settings classes as the README's environment-variable table (the README is tested against it)."""

from __future__ import annotations

import json

from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from vchat_settings import Settings
from vllm_launch.settings import LaunchSettings


def _default(value: object) -> str:
    if value is PydanticUndefined or value is None:
        return ""
    if isinstance(value, list | tuple | dict):
        return f"`{json.dumps(value, separators=(',', ':'))}`" if value else ""
    return f"`{str(value).rstrip('/')}`"


def env_table(*classes: type[BaseSettings]) -> str:
    """A markdown table: variable, default, meaning — one row per field, first class wins on duplicates (no classes:
    the gateway's and the launcher's settings)."""
    classes = classes or (Settings, LaunchSettings)
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    seen: set[str] = set()
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", ""))
        for name, field in cls.model_fields.items():
            var = f"{prefix}{name}".upper()
            if var in seen:
                continue
            seen.add(var)
            default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
            meaning = (field.description or "").replace("|", "\\|")
            rows.append(f"| `{var}` | {_default(default)} | {meaning} |")
    return "\n".join(rows) + "\n"
