"""``python -m cas_cli`` runs the CLI (as the ``cas`` script does)."""

from .main import run

run()
