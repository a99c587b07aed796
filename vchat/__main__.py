"""``python -m vchat``: the same as the ``vchat`` command."""

from vchat.cli import main

main()
