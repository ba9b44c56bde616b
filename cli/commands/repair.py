"""``cas repair``."""

from __future__ import annotations

import click

from .. import errors as codes
from ..context import Options, pass_options
from ..output import echo, emit_json, human_bytes, plural


@click.command()
@click.pass_context
@pass_options
def repair(opts: Options, ctx: click.Context) -> None:
    """Rebuild the store's index from its packs and re-upload lost chunks from this worktree.

    Run it when `cas verify` reports missing or damaged chunks or a damaged index. Every
    pack is read and every chunk checked; chunks that some version needs but no intact
    pack holds are taken from the files of this worktree (if it still has them) and
    uploaded again. Repair never deletes a pack; it replaces the index segments with one
    rebuilt segment. What cannot be recovered is listed, and the exit code is then 9.
    """
    with opts.open_repo() as repo:
        report = repo.repair()
    if opts.json:
        emit_json(
            {
                "ok": report.ok,
                "packs": report.packs,
                "blobs": report.blobs,
                "damaged_packs": report.damaged_packs,
                "damaged_blobs": report.damaged_blobs,
                "restored_packs": report.restored_packs,
                "unseen_packs": report.unseen_packs,
                "reuploaded_chunks": report.reuploaded_chunks,
                "reuploaded_bytes": report.reuploaded_bytes,
                "segments_written": report.segments_written,
                "segments_removed": report.segments_removed,
                "unrecoverable": [
                    {"object": o, "affects": list(a)} for o, a in report.unrecoverable
                ],
            }
        )
    else:
        echo(
            f"read {plural(report.packs, 'pack')}, {plural(report.blobs, 'intact blob')}; "
            f"{plural(len(report.damaged_blobs), 'damaged blob')} in "
            f"{plural(len(report.damaged_packs), 'pack')}"
        )
        if report.restored_packs:
            echo(
                f"restored {plural(len(report.restored_packs), 'pack')} in place (every blob "
                "intact, only its footer or a header damaged)"
            )
        if report.unseen_packs:
            echo(
                f"note: {plural(len(report.unseen_packs), 'pack')} the old index listed "
                "cannot be seen on the store: lost, or still uploading from another machine "
                "(Drive); if they appear later, run `cas repair` again"
            )
        if report.reuploaded_chunks:
            echo(
                f"re-uploaded {plural(report.reuploaded_chunks, 'chunk')} "
                f"({human_bytes(report.reuploaded_bytes)}) from this worktree"
            )
        echo(
            f"index rebuilt: {plural(report.segments_written, 'segment')} written, "
            f"{report.segments_removed} replaced"
        )
        for obj, where in report.unrecoverable:
            echo(f"error: unrecoverable: {obj} (affects {', '.join(where)})")
        echo(
            "every version is complete"
            if report.ok
            else f"{plural(len(report.unrecoverable), 'object')} could not be recovered"
        )
    if not report.ok:
        ctx.exit(codes.INTEGRITY)
