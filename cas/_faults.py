"""Named crash points for tests.

The library calls :func:`crash_point` at the moments a crash matters most (after a pack
is uploaded, after the index segment, before the ref entry, midway through writing
files). They do nothing unless a test installs a hook with :func:`set_hook`; the crash
tests install one that calls ``os._exit`` at a chosen point in a subprocess. The library
never reads the environment for this.
"""

from __future__ import annotations

from collections.abc import Callable

POINTS = (
    "after-pack-upload",
    "after-index-write",
    "after-commit-write",
    "before-ref-update",
    "after-ref-update",
    "mid-checkout",
    "mid-checkout-rename",
    "before-checkout-delete",
)

_hook: Callable[[str], None] | None = None


def set_hook(hook: Callable[[str], None] | None) -> None:
    """Install (or with None remove) the function called at every crash point."""
    global _hook
    _hook = hook


def crash_point(name: str) -> None:
    """Call the installed hook, if any, with the crash point's name."""
    if _hook is not None:
        _hook(name)
