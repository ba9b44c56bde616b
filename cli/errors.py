"""Exit codes and the mapping from exceptions to them.

Scripts must treat any code not listed here as a failure.

====  ===========================================================================
code  meaning
====  ===========================================================================
0     success
1     failed for a reason not listed below, including internal errors (bugs)
2     usage error (bad option or argument)
3     finished, with warnings
4     not a repository / no store or worktree where one was expected
5     not found (unknown ref, path or object)
6     conflict (uncommitted changes, branch moved or diverged, tag exists)
7     locked by another process
8     remote unavailable or refused (permission, disk full, I/O)
9     integrity problem (corrupt or missing data, unsafe path in a version)
10    unsupported repository format (upgrade cas)
130   interrupted (Ctrl-C)
====  ===========================================================================
"""

from __future__ import annotations

from cas import errors as e

SUCCESS = 0
FAILURE = 1
USAGE = 2
WARNINGS = 3
NOT_A_REPOSITORY = 4
NOT_FOUND = 5
CONFLICT = 6
LOCKED = 7
BACKEND = 8
INTEGRITY = 9
UNSUPPORTED = 10
INTERRUPTED = 130

EXIT_CODES: dict[type[BaseException], int] = {
    e.CasError: FAILURE,
    e.RepositoryError: NOT_A_REPOSITORY,
    e.RepositoryNotFoundError: NOT_A_REPOSITORY,
    e.WorktreeNotFoundError: NOT_A_REPOSITORY,
    e.DetachedHeadError: CONFLICT,
    e.UnsupportedFormatError: UNSUPPORTED,
    e.LockedError: LOCKED,
    e.NotFoundError: NOT_FOUND,
    e.ConflictError: CONFLICT,
    e.IntegrityError: INTEGRITY,
    e.UnsafePathError: INTEGRITY,
    e.InvalidNameError: USAGE,
    e.BackendError: BACKEND,
}


def exit_code_for(exc: BaseException) -> int:
    """The exit code of an exception: its nearest mapped class in the MRO."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return FAILURE
