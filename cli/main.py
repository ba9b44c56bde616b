"""The ``cas`` command group and ``main()``, which maps errors to exit codes."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import click

import cas
from cas.errors import CasError

from . import errors as codes
from .commands import COMMANDS
from .context import Options, cache_dir_from_env
from .output import LogHandler, error_json, note

EPILOG = """\b
Exit codes: 0 ok, 1 failure, 2 usage, 3 warnings, 4 not a repository, 5 not found,
6 conflict, 7 locked, 8 remote unavailable, 9 integrity, 10 unsupported format,
130 interrupted. See docs/cli.md.
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(cas.__version__, prog_name="cas")
@click.option(
    "-C",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    help="Run as if started in DIR.",
    metavar="DIR",
)
@click.option(
    "--json",
    "json_mode",
    is_flag=True,
    help="Print results (and errors, warnings) as JSON; also after the command.",
)
@click.option(
    "-q", "--quiet", is_flag=True, help="No progress bars or notes; also after the command."
)
@click.option(
    "--debug", is_flag=True, help="Show a traceback for every error, and the library's debug log."
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Local cache folder (default: $CAS_CACHE_DIR, else $XDG_CACHE_HOME/cas).",
)
@click.pass_context
def cli(
    ctx: click.Context,
    directory: Path,
    json_mode: bool,
    quiet: bool,
    debug: bool,
    cache_dir: Path | None,
) -> None:
    """cas — versioned, content-addressed storage for ML asset folders.

    Snapshot a folder into a store (a Drive folder, a local path) with `cas commit`,
    and make it any earlier version again with `cas checkout`. Only content the store
    has never seen is uploaded; only what the folder lacks is fetched.
    """
    # main() hands in its Options (its log handler and error report read them); fill it in.
    opts = ctx.ensure_object(Options)
    opts.directory = directory
    opts.json = json_mode
    opts.quiet = quiet
    opts.debug = debug
    opts.cache_dir = cache_dir or cache_dir_from_env()
    if debug:
        logging.getLogger("cas").setLevel(logging.DEBUG)


for _command in COMMANDS:
    cli.add_command(_command)


def _report(exc: BaseException, code: int, json_mode: bool, debug: bool) -> None:
    if debug:
        traceback.print_exception(exc)
    if isinstance(exc, CasError):
        message, hint = exc.message, exc.hint
    else:
        message = f"internal error: {type(exc).__name__}: {exc}"
        hint = "please report this; rerun with --debug for a traceback"
    if json_mode:
        error_json(code, message, hint)
        return
    note(f"error: {message}")
    if hint:
        note(f"hint: {hint}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return (and, as a script, exit with) the exit code.

    The library's log records (warnings, and with --debug everything) are printed on
    stderr while it runs, as ``warning: ...`` lines or, with --json, JSON objects.
    """
    args = sys.argv[1:] if argv is None else argv
    opts = Options()
    handler = LogHandler(lambda: opts.json, lambda: opts.debug)
    logger = logging.getLogger("cas")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        return _run(args, opts)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _run(args: list[str], opts: Options) -> int:
    try:
        rv = cli.main(args=args, prog_name="cas", standalone_mode=False, obj=opts)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.ClickException as exc:
        # A usage error may come before --json was parsed (`cas status --bogus --json`).
        if opts.json or "--json" in args:
            error_json(exc.exit_code, exc.format_message(), "")
        else:
            exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return codes.INTERRUPTED
    except KeyboardInterrupt:
        click.echo("interrupted; completed work is kept, rerun to finish", err=True)
        return codes.INTERRUPTED
    except BrokenPipeError:
        return codes.FAILURE
    except Exception as exc:  # noqa: BLE001 (the one place every error becomes an exit code)
        code = codes.exit_code_for(exc)
        _report(exc, code, opts.json, opts.debug)
        return code
    # With standalone_mode=False click returns the code given to ctx.exit(); commands
    # return nothing otherwise.
    return rv if isinstance(rv, int) else codes.SUCCESS


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
