"""``python -m skillbank``: the same as the ``skillbank`` command."""

from skillbank.cli import main

main()
