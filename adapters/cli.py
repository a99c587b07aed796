"""``vchat adapters list | validate PATH | add PATH | remove NAME``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from adapters.registry import AdapterError, AdapterRegistry
from adapters.replicas import ReplicaResult, load_everywhere, unload_everywhere
from vchat_settings import Settings


def _registry(settings: Settings) -> AdapterRegistry:
    return AdapterRegistry(settings.adapters_dir, base_models=settings.base_model_names,
                           max_rank=settings.max_lora_rank)


def _report(results: list[ReplicaResult]) -> int:
    for result in results:
        sys.stdout.write(f"  {result.url}: {'ok' if result.ok else 'FAILED'} ({result.detail})\n")
    return 0 if all(result.ok for result in results) else 1


def main(argv: Sequence[str], settings: Settings) -> int:
    parser = argparse.ArgumentParser(prog="vchat adapters", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="adapters in VCHAT_ADAPTERS_DIR")
    check = sub.add_parser("validate", help="check a folder against vLLM's rules")
    check.add_argument("path", type=Path)
    check.add_argument("--name")
    add = sub.add_parser("add", help="validate, copy in, and load into every vLLM replica")
    add.add_argument("path", type=Path)
    add.add_argument("--name")
    add.add_argument("--replace", action="store_true")
    add.add_argument("--no-load", action="store_true", help="only copy (vLLM loads it at its next start)")
    remove = sub.add_parser("remove", help="unload from every replica and delete")
    remove.add_argument("name")
    args = parser.parse_args(list(argv))
    registry = _registry(settings)
    key = settings.vllm_api_key.get_secret_value() if settings.vllm_api_key else None
    try:
        if args.action == "list":
            for info in registry.list():
                sys.stdout.write(json.dumps({"name": info.name, "rank": info.rank, "base_model": info.base_model,
                                             "created_at": info.manifest.get("created_at")}) + "\n")
            return 0
        if args.action == "validate":
            verdict = registry.check(args.path, args.name)
            sys.stdout.write("ok\n" if verdict.ok else "".join(f"- {p}\n" for p in verdict.problems))
            return 0 if verdict.ok else 2
        if args.action == "add":
            info = registry.add(args.path, args.name, replace=args.replace)
            sys.stdout.write(f"added {info.name} (rank {info.rank}) at {info.path}\n")
            if args.no_load or not (settings.replicas or settings.vllm_replicas_dns):
                return 0
            return _report(asyncio.run(load_everywhere(settings.replicas, info.name, str(info.path.resolve()),
                                                       dns=settings.vllm_replicas_dns, api_key=key)))
        code = _report(asyncio.run(unload_everywhere(settings.replicas, args.name, dns=settings.vllm_replicas_dns,
                                                     api_key=key)))
        registry.remove(args.name)
        sys.stdout.write(f"removed {args.name}\n")
        return code
    except AdapterError as exc:
        sys.stderr.write(f"vchat adapters: {exc.message}\n")
        return 2
