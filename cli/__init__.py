"""The ``cas`` command line (installed as the ``cas_cli`` package)."""
