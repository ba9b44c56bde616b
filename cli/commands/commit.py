"""``cas commit -m MSG [--tag TAG]``."""

from __future__ import annotations

import click

from .. import errors as codes
from ..context import Options, pass_options
from ..output import echo, emit_json, human_bytes, note, plural, warning

DRIVE_NOTE = (
    "note: on a Google Drive mount, uploads finish in the background; before the runtime "
    "ends, run drive.flush_and_unmount() (from google.colab import drive) so that other "
    "machines see this commit."
)


@click.command()
@click.option("-m", "--message", required=True, help="What this version is.")
@click.option("--tag", default=None, help="Also tag the new commit (the tag must not exist).")
@click.option("--author", default=None, help="Author (default: user@host).")
@click.pass_context
@pass_options
def commit(
    opts: Options, ctx: click.Context, message: str, tag: str | None, author: str | None
) -> None:
    """Snapshot the worktree as a new version on the current branch.

    Only content the store has never seen is uploaded; files whose size, mtime, inode
    and ctime are unchanged since cas last saw them are not even read. Nothing on the
    remote is overwritten: an interrupted commit leaves only unreferenced data, and a
    rerun reuses every pack already uploaded. Sockets, FIFOs and devices in the folder
    cannot be stored: they are left out with a warning, and the exit code is then 3.
    """
    if not message.strip():
        raise click.BadParameter(
            "the commit message is empty; say what this version is", param_hint="'-m' / '--message'"
        )
    with opts.open_repo() as repo:
        res = repo.commit(message, tag=tag, author=author)
        store = repo.store
        # A network or FUSE mount (Drive): what a write returned may still be uploading.
        uploads_later = not repo.repository.backend.capabilities.ordered_visibility
    if opts.json:
        emit_json(
            {
                "commit": res.commit_id,
                "branch": res.branch,
                "tag": res.tag,
                "files": res.files,
                "bytes": res.bytes,
                "bytes_scanned": res.scanned_bytes,
                "bytes_new": res.new_bytes,
                "bytes_stored": res.stored_bytes,
                "bytes_resumed": res.resumed_bytes,
                "diverged": res.diverged,
                "skipped": list(res.skipped),
            }
        )
        _exit_with_warnings(ctx, opts, res.skipped)
        return
    echo(res.commit_id.hex())
    if not opts.quiet:
        note(
            f"[{res.branch} {res.short}]{' tag ' + res.tag if res.tag else ''} "
            f"{plural(res.files, 'file')}, "
            f"{human_bytes(res.bytes)}; read {human_bytes(res.scanned_bytes)}, "
            f"new {human_bytes(res.new_bytes)}, uploaded {human_bytes(res.stored_bytes)}"
        )
        if res.resumed_packs:
            note(
                f"reused {plural(res.resumed_packs, 'pack')} ({human_bytes(res.resumed_bytes)}) "
                "that an interrupted commit had uploaded"
            )
        if uploads_later and "://" not in store:
            note(DRIVE_NOTE)
    if res.diverged:  # a warning, shown with --quiet too
        note(
            f"warning: branch {res.branch} has diverged (another writer committed at "
            "the same time); see `cas status`."
        )
    _exit_with_warnings(ctx, opts, res.skipped)


def _exit_with_warnings(ctx: click.Context, opts: Options, skipped: tuple[str, ...]) -> None:
    """Warn about what the commit left out, then exit 3 ("finished, with warnings").

    With --json the result's "skipped" lists them (and the library's log warned about
    each already), so no summary is added on stderr.
    """
    if not skipped:
        return
    if not opts.json:
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        warning(
            f"{plural(len(skipped), 'path')} left out of the commit (not a file, folder or "
            f"symlink: a socket, FIFO or device): {', '.join(skipped[:10])}{more}",
            json_mode=False,
        )
    ctx.exit(codes.WARNINGS)
