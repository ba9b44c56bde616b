"""Run the CLI in a subprocess with a hook at a crash point.

Usage: ``python driver.py POINT[@N] ACTION -- CAS ARGS...``

At the N-th time (default 1) the library reaches crash point POINT, ACTION happens:
``exit`` kills the process at once with SIGKILL, sent to itself at that very point (no
cleanup, no flush, no handler runs; the parent sees ``returncode == -9``); ``sigint``
sends the process a Ctrl-C; ``barrier:DIR:N`` waits for N peers.
POINT ``none`` runs the CLI without a hook.

With ``CAS_TEST_FSTYPE`` set (say to ``fuse.drive``), every folder store is taken to be on
a filesystem of that type: on a FUSE mount packs are spooled on the local disk and
written whole, as on Google Drive.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from cas import _faults
from cas.store import local as local_backend
from cas_cli.main import main


def install(spec: str, action: str) -> None:
    """Install the hook described by ``POINT[@N]`` and ``ACTION``."""
    point, _, nth = spec.partition("@")
    remaining = [int(nth or 1)]
    lock = threading.Lock()

    def hook(name: str) -> None:
        if name != point:
            return
        with lock:
            remaining[0] -= 1
            if remaining[0] != 0:
                return
        if action == "exit":
            os.kill(os.getpid(), signal.SIGKILL)
        if action.startswith("barrier:"):
            _, folder, count = action.split(":")
            open(os.path.join(folder, str(os.getpid())), "w").close()
            deadline = time.monotonic() + 60
            while len(os.listdir(folder)) < int(count) and time.monotonic() < deadline:
                time.sleep(0.01)
            return
        os.kill(os.getpid(), signal.SIGINT)

    if action == "sigint":
        # A process started in the background by a non-interactive shell (nohup, `&`)
        # inherits SIGINT ignored, and Python then keeps it so: Ctrl-C must reach us.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _faults.set_hook(hook)


if __name__ == "__main__":
    spec, action, sep, *args = sys.argv[1:]
    if sep != "--":
        raise SystemExit("usage: driver.py POINT[@N] ACTION -- ARGS")
    fstype = os.environ.get("CAS_TEST_FSTYPE")
    if fstype:
        local_backend.filesystem_type = lambda path, *rest: fstype
    if spec != "none":
        install(spec, action)
    sys.exit(main(args))
