"""Run the CLI in a subprocess with a hook at a crash point.

Usage: python driver.py POINT ACTION -- CAS ARGS...
ACTION is ``exit`` (``os._exit(137)``, like SIGKILL) or ``sigint`` (a Ctrl-C).
"""

from __future__ import annotations

import os
import signal
import sys

from cas_cli.main import main

from cas import _faults


def _hook_for(point: str, action: str) -> object:
    def hook(name: str) -> None:
        if name != point:
            return
        if action == "exit":
            os._exit(137)
        os.kill(os.getpid(), signal.SIGINT)

    return hook


if __name__ == "__main__":
    point, action, sep, *args = sys.argv[1:]
    assert sep == "--"
    _faults.set_hook(_hook_for(point, action))  # type: ignore[arg-type]
    sys.exit(main(args))
