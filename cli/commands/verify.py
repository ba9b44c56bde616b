"""``cas verify [--read-data | --read-data-subset N%]``."""

from __future__ import annotations

import click

from .. import errors as codes
from ..context import Options, pass_options
from ..output import echo, emit_json, human_bytes, plural


def _percent(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip().rstrip("%")
    try:
        share = float(text) / 100
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a percentage such as 10%") from None
    if not 0 < share <= 1:
        raise click.BadParameter("the subset must be between 0% (excluded) and 100%")
    return share


@click.command()
@click.option("--read-data", is_flag=True, help="Download every pack and check every chunk.")
@click.option(
    "--read-data-subset",
    "subset",
    metavar="N%",
    default=None,
    help="Read only N% of the packs; successive runs rotate through all of them.",
)
@click.pass_context
@pass_options
def verify(opts: Options, ctx: click.Context, read_data: bool, subset: str | None) -> None:
    """Check that every version in the store can be restored.

    Without options: every ref, commit and tree is read, every chunk a file lists is in
    the index, and every indexed pack exists with its recorded size. --read-data also
    downloads every pack and checks every chunk against its hash. Every problem is
    reported with the versions and files it affects; the exit code is 9 if any was found.
    Verify only reads: it never changes the store.
    """
    with opts.open_repo() as repo:
        report = repo.verify(read_data=read_data, subset=_percent(subset))
    if opts.json:
        emit_json(
            {
                "ok": report.ok,
                "problems": [
                    {
                        "kind": p.kind,
                        "object": p.object,
                        "detail": p.detail,
                        "affects": list(p.affects),
                    }
                    for p in report.problems
                ],
                "orphan_packs": report.orphan_packs,
                "unindexed_packs": report.unindexed_packs,
                "damaged_packs": report.damaged_packs,
                "pending_refs": report.pending_refs,
                "pending_segments": report.pending_segments,
                "segments": report.segments,
                "refs": report.refs,
                "commits": report.commits,
                "trees": report.trees,
                "files": report.files,
                "chunks": report.chunks,
                "packs": report.packs,
                "packs_read": report.packs_read,
                "bytes_read": report.bytes_read,
                "read_packs": report.read_packs,
            }
        )
    else:
        echo(
            f"checked {plural(report.refs, 'ref')}, {plural(report.commits, 'commit')}, "
            f"{plural(report.trees, 'tree')}, {plural(report.files, 'file')}, "
            f"{plural(report.packs, 'pack')}"
            + (
                f"; read {plural(report.packs_read, 'pack')} ({human_bytes(report.bytes_read)})"
                if report.packs_read
                else ""
            )
        )
        for line in report.notes():  # orphans, damaged packs, uploads still on their way
            echo(line)
        for p in report.problems:
            echo(f"error: {p}")
        echo(
            "no problems found" if report.ok else f"{plural(len(report.problems), 'problem')} found"
        )
    if not report.ok:
        ctx.exit(codes.INTEGRITY)
