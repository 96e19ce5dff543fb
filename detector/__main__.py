"""``python -m detector`` is the ``egress-detector`` command."""

from .cli.main import run

run()
