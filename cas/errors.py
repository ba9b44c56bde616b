"""The exception hierarchy of cas.

Every error a user can cause or meet derives from :class:`CasError`; anything else that
escapes the library is a bug. The CLI maps these classes to exit codes (``cli/errors.py``);
the library itself knows nothing about exit codes.

::

    CasError
    ├── RepositoryError
    │   ├── RepositoryNotFoundError      no store / no worktree where one was expected
    │   ├── WorktreeNotFoundError
    │   ├── UnsupportedFormatError       newer format version or unknown mandatory feature
    │   ├── DetachedHeadError            commit needs a branch
    │   └── LockedError                  another process holds the worktree lock
    ├── NotFoundError  (also LookupError)
    │   ├── ObjectNotFoundError          a key is missing on the remote
    │   ├── RefNotFoundError             no such tag, branch or commit
    │   └── PathNotFoundError            no such path inside a version
    ├── ConflictError
    │   ├── AlreadyExistsError           create-only write met an existing key / ref
    │   ├── PreconditionFailedError      compare-and-swap token did not match
    │   ├── RefConflictError             a branch moved under us, or diverged
    │   ├── AmbiguousRefError            a commit-id prefix matches several commits
    │   └── DirtyWorktreeError           checkout would destroy uncommitted changes
    ├── IntegrityError
    │   ├── CorruptObjectError           bytes that cannot be decoded
    │   ├── HashMismatchError            bytes that do not match their name
    │   ├── MissingDataError             data a version needs is absent from the store
    │   └── ShortReadError               fewer bytes than asked for
    ├── InvalidNameError (also ValueError)  a branch or tag name cas cannot use
    ├── UnsafePathError                  a path that would escape the worktree
    ├── WorktreeReadError                a worktree file could not be read by commit
    └── BackendError                     the remote failed; ``transient`` says if a retry may help
        ├── BackendUnavailableError      (transient)
        ├── PermissionDeniedError
        └── NoSpaceError
"""

from __future__ import annotations

from collections.abc import Sequence

# The next step when a store is newer than this cas (the package is not on PyPI under the
# name "cas", which belongs to another project, so no pip command is given).
UPGRADE_HINT = "upgrade cas to a release that reads it (its README shows how to install it)"


class CasError(Exception):
    """Base class of every error cas raises on purpose.

    Attributes:
        hint: one line telling the user what to do next, or ``""``.
    """

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        if hint:
            self.hint = hint

    def __str__(self) -> str:
        return self.message


class RepositoryError(CasError):
    """The store or worktree cannot be used as it is."""


class RepositoryNotFoundError(RepositoryError):
    """No store exists at the given location."""

    def __init__(self, location: str, *, hint: str = "") -> None:
        super().__init__(
            f"no cas store at {location}",
            hint=hint or "create one with `cas init STORE` or check the path",
        )
        self.location = location


class WorktreeNotFoundError(RepositoryError):
    """No ``.cas`` folder in the directory or any parent."""

    def __init__(self, start: str) -> None:
        super().__init__(
            f"not inside a cas worktree: no .cas folder in {start} or any parent",
            hint="run `cas init STORE` or `cas clone STORE DIR`, or pass -C DIR",
        )
        self.start = start


class UnsupportedFormatError(RepositoryError):
    """The store uses a format version or mandatory feature this cas does not know."""


class DetachedHeadError(RepositoryError):
    """The worktree is not on a branch, so a commit has nowhere to go."""


class LockedError(RepositoryError):
    """Another process holds a lock this operation needs."""


class NotFoundError(CasError, LookupError):
    """Something that was asked for does not exist."""


class ObjectNotFoundError(NotFoundError):
    """A key is missing from the remote (or from the index)."""

    def __init__(self, key: str, *, hint: str = "") -> None:
        super().__init__(f"object not found: {key}", hint=hint)
        self.key = key


class RefNotFoundError(NotFoundError):
    """No tag, branch or commit matches a name."""

    def __init__(self, ref: str, *, kind: str = "") -> None:
        if kind:  # a name that must be a tag or a branch
            message = f"unknown {kind} {ref!r}"
            hint = f"list them with `cas {kind}`"
        else:
            message = f"unknown ref {ref!r}: no tag, branch or commit id matches it"
            hint = "list versions with `cas log`, `cas tag` or `cas branch`"
        super().__init__(message, hint=hint)
        self.ref = ref


class PathNotFoundError(NotFoundError):
    """A path does not exist inside a version."""

    def __init__(self, path: str, where: str) -> None:
        super().__init__(f"path {path!r} does not exist in {where}")
        self.path = path


class ConflictError(CasError):
    """The operation conflicts with the current state."""


class AlreadyExistsError(ConflictError):
    """A create-only write found the key (or ref) already there."""

    def __init__(self, what: str, *, hint: str = "") -> None:
        super().__init__(f"{what} already exists", hint=hint)
        self.what = what


class PreconditionFailedError(ConflictError):
    """A compare-and-swap write found a different version token."""


class RefConflictError(ConflictError):
    """A branch moved under us or has diverged."""


class AmbiguousRefError(ConflictError):
    """A commit-id prefix matches more than one commit."""


class DirtyWorktreeError(ConflictError):
    """Checkout would overwrite or delete changes that are in no commit."""

    def __init__(self, paths: Sequence[str], *, attached: bool = True) -> None:
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        if attached:
            message = f"uncommitted changes would be lost: {shown}"
            hint = "commit them first, or pass --force (force=True) to discard them"
        else:  # a folder with no version checked out yet (a clone into a full folder)
            message = f"files in the folder differ from the version and would be lost: {shown}"
            hint = "move them elsewhere first, or pass --force (force=True) to overwrite them"
        super().__init__(message, hint=hint)
        self.paths = list(paths)


class IntegrityError(CasError):
    """Stored data is damaged or missing."""

    hint = (
        "nothing damaged was written to your files; `cas verify` names what is affected"
        " and `cas repair` fixes what can be"
    )


class CorruptObjectError(IntegrityError):
    """Bytes that cannot be decoded as the object they claim to be."""

    def __init__(self, what: str, reason: str, *, hint: str = "") -> None:
        super().__init__(f"corrupt {what}: {reason}", hint=hint)
        self.what = what
        self.reason = reason


class HashMismatchError(IntegrityError):
    """Bytes whose BLAKE3 hash differs from the id they are stored under."""

    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"hash mismatch in {what}: expected {expected}, got {actual}")
        self.what = what
        self.expected = expected
        self.actual = actual


class MissingDataError(IntegrityError):
    """A blob that a version needs is in no pack the index knows."""

    hint = "run `cas verify` to see what is affected and `cas repair` to rebuild or re-upload"


class ShortReadError(IntegrityError):
    """A read returned fewer bytes than the range asked for."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"short read of {key}: expected {expected} bytes, got {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class InvalidNameError(CasError, ValueError):
    """A branch or tag name that cas refuses (spaces, ``..``, looks like an id, …)."""

    hint = "use letters, digits and . _ - / (not at the start), e.g. v2 or exp/lr-3e-4"


class UnsafePathError(CasError):
    """A path from a manifest (or the user) would escape the worktree."""

    hint = "the version is refused as a whole; nothing was written"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"unsafe path {path!r}: {reason}")
        self.path = path
        self.reason = reason


class WorktreeReadError(CasError):
    """A file of the worktree could not be read while committing (nothing was committed)."""

    def __init__(self, path: str, exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileNotFoundError):
            super().__init__(
                f"{path} disappeared while the commit was reading it",
                hint="something is changing the folder; commit again once it is done",
            )
        else:
            super().__init__(
                f"cannot read {path}: {reason}",
                hint="fix its permissions or add it to .casignore, then commit again",
            )
        self.path = path


class BackendError(CasError):
    """The remote failed an operation.

    Attributes:
        transient: True when retrying the same operation later may succeed.
    """

    transient: bool = False


class BackendUnavailableError(BackendError):
    """The remote is unreachable or overloaded; a retry may help."""

    transient = True
    hint = "check that the store is mounted / reachable and rerun; completed work is kept"


class PermissionDeniedError(BackendError):
    """The remote refused the operation for lack of permission."""


class NoSpaceError(BackendError):
    """No space is left on the device or quota holding the data."""

    hint = "free space and rerun; completed work is kept"
