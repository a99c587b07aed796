"""``python -m gateway``: the same as the ``vchat`` command."""

from gateway.cli import main

main()
