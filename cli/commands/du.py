"""``cas du``."""

from __future__ import annotations

import click

from ..context import Options, pass_options
from ..output import echo, emit_json, format_time, human_bytes, plural


@click.command()
@pass_options
def du(opts: Options) -> None:
    """Show, per version, its logical size and the bytes stored only for it.

    "Only" bytes are what deleting that version alone could free. The last lines give
    the store's totals: dedup ratio (logical bytes of all versions ÷ distinct bytes)
    and compression ratio (distinct bytes ÷ stored bytes).
    """
    with opts.open_repo() as repo:
        r = repo.du()
    if opts.json:
        emit_json(
            {
                "versions": [
                    {
                        "commit": v.commit_id,
                        "refs": list(v.names),
                        "files": v.files,
                        "logical_bytes": v.logical_bytes,
                        "unique_stored_bytes": v.unique_stored_bytes,
                        "time_ns": v.commit.time_ns,
                        "message": v.commit.message,
                    }
                    for v in r.versions
                ],
                "logical_bytes": r.logical_bytes,
                "distinct_bytes": r.distinct_raw_bytes,
                "stored_bytes": r.distinct_stored_bytes,
                "pack_bytes": r.pack_bytes,
                "packs": r.packs,
                "dedup_ratio": r.dedup_ratio,
                "compression_ratio": r.compression_ratio,
            }
        )
        return
    echo(f"{'version':14} {'date':16} {'files':>7} {'logical':>11} {'only here':>11}  refs")
    for v in r.versions:
        echo(
            f"{v.commit_id.short:14} {format_time(v.commit.time_ns)[:16]} {v.files:>7} "
            f"{human_bytes(v.logical_bytes):>11} {human_bytes(v.unique_stored_bytes):>11}  "
            f"{', '.join(v.names)}"
        )
    echo()
    echo(
        f"versions: {len(r.versions)}, logical {human_bytes(r.logical_bytes)}, "
        f"distinct {human_bytes(r.distinct_raw_bytes)}, "
        f"stored {human_bytes(r.distinct_stored_bytes)} in {plural(r.packs, 'pack')} "
        f"({human_bytes(r.pack_bytes)})"
    )
    echo(
        f"dedup ratio {r.dedup_ratio:.2f}x, compression ratio {r.compression_ratio:.2f}x, "
        f"overall {r.logical_bytes / r.pack_bytes if r.pack_bytes else 1:.2f}x"
    )
