"""``cas repair``."""

from __future__ import annotations

import click

from .. import errors as codes
from ..context import Options, pass_options
from ..output import echo, emit_json, human_bytes


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
            f"read {report.packs} packs, {report.blobs} intact blobs; "
            f"{len(report.damaged_blobs)} damaged blobs in {len(report.damaged_packs)} packs"
        )
        if report.reuploaded_chunks:
            echo(
                f"re-uploaded {report.reuploaded_chunks} chunks "
                f"({human_bytes(report.reuploaded_bytes)}) from this worktree"
            )
        echo(
            f"index rebuilt: {report.segments_written} segment written, "
            f"{report.segments_removed} replaced"
        )
        for obj, where in report.unrecoverable:
            echo(f"error: unrecoverable: {obj} (affects {', '.join(where)})")
        echo(
            "every version is complete"
            if report.ok
            else f"{len(report.unrecoverable)} objects could not be recovered"
        )
    if not report.ok:
        ctx.exit(codes.INTEGRITY)
