"""The ``vchat`` command: ``vchat serve`` (the default) and ``vchat env-table``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from gateway.settings import Settings


def settings_error_line(exc: ValidationError, settings_cls: type[BaseSettings]) -> str:
    """One line naming the first bad setting by its environment variable, and why it is bad."""
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    value = first.get("input")
    shown = "" if isinstance(value, dict) or field.endswith("key") or field.endswith("keys") else f" (got {value!r})"
    return f"invalid setting {prefix}{field.upper()}{shown}: {first['msg']}"


def load_settings() -> Settings:
    """Settings from the environment, or exit with a one-line message naming the bad setting."""
    try:
        return Settings()
    except ValidationError as exc:
        sys.exit(f"vchat: {settings_error_line(exc, Settings)}")


def _serve(_: argparse.Namespace) -> None:
    import uvicorn

    from gateway.app import create_app
    from gateway.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                access_log=False, timeout_graceful_shutdown=5)


def _env_table(_: argparse.Namespace) -> None:
    from gateway.envtable import env_table

    sys.stdout.write(env_table())


def _adapters(args: argparse.Namespace) -> None:
    from adapters.cli import main as adapters_main

    sys.exit(adapters_main(args.rest, load_settings()))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``vchat`` and ``python -m gateway``."""
    parser = argparse.ArgumentParser(prog="vchat", description="vChat gateway")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the gateway (default)").set_defaults(func=_serve)
    sub.add_parser("env-table", help="print the README's environment-variable table").set_defaults(
        func=_env_table)
    adapters = sub.add_parser("adapters", help="list, validate, add or remove LoRA adapters", add_help=False)
    adapters.add_argument("rest", nargs=argparse.REMAINDER)
    adapters.set_defaults(func=_adapters)
    args = parser.parse_args(argv)
    getattr(args, "func", _serve)(args)
