"""``python -m gateway [serve]``: runs the gateway, as ``vchat serve`` does (``make dev`` starts it so); the ``vchat``
command's other subcommands are ``python -m vchat``'s, one layer up, which imports the gateway (never the reverse)."""

import argparse

from gateway.serving import serve
from vchat_settings import Settings, load_settings

parser = argparse.ArgumentParser(prog="python -m gateway", description="vChat gateway: run it (`vchat serve`)",
                                 epilog="env-table, train, adapters: `vchat` or `python -m vchat`")
parser.add_argument("command", nargs="?", choices=["serve"], default="serve", help="run the gateway (the default)")
parser.parse_args()
serve(load_settings(Settings, "vchat"))
