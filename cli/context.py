"""Global options and the one way commands open a worktree."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

import cas
from cas.api import Repo
from cas.progress import Progress
from cas.store import location_scheme

from .paths import to_worktree_paths
from .progress import make_progress


@dataclass
class Options:
    """What the global options say (``--json`` and ``-q`` may also follow the command)."""

    directory: Path = Path(".")
    json: bool = False
    quiet: bool = False
    debug: bool = False
    cache_dir: Path | None = None

    def open_repo(self) -> Repo:
        """The worktree containing ``-C DIR`` (or the current directory)."""
        return cas.open(self.directory, cache_dir=self.cache_dir, progress=self.progress())

    def progress(self) -> Progress:
        """A progress reporter fitting the options."""
        return make_progress(quiet=self.quiet, json_mode=self.json)

    def worktree_paths(self, repo: Repo, paths: Sequence[str], param: str = "PATH") -> list[str]:
        """PATH arguments (relative to the current folder or ``-C DIR``, or absolute) as
        the worktree-relative paths the library takes; see :mod:`cas_cli.paths`."""
        return to_worktree_paths(list(paths), base=self.directory, root=repo.root, param=param)

    def local_path(self, path: Path) -> Path:
        """A folder argument (``init``/``clone`` DIR), relative to ``-C DIR`` when given."""
        return path if path.is_absolute() else self.directory / path

    def store_location(self, store: str) -> str:
        """STORE as the library takes it: a local path relative to ``-C DIR``, as git's
        ``-C`` does; URLs (``s3://…``) and ``~`` paths as given."""
        if location_scheme(store) or store.startswith("~") or os.path.isabs(store):
            return store  # s3://…, file:/abs and file:///abs alike
        return os.fspath(self.directory / store)


def cache_dir_from_env() -> Path | None:
    """``CAS_CACHE_DIR`` if set (the CLI is the only layer reading the environment)."""
    value = os.environ.get("CAS_CACHE_DIR")
    return Path(value) if value else None


pass_options = click.make_pass_decorator(Options, ensure=True)


def _set_option(name: str) -> Callable[[click.Context, click.Parameter, bool], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            setattr(ctx.ensure_object(Options), name, True)

    return callback


def add_output_options(command: click.Command) -> click.Command:
    """Give ``command`` its own ``--json`` and ``-q/--quiet``, the same switches as the
    global ones: ``cas status --json`` is ``cas --json status``."""
    command.params += [
        click.Option(
            ["--json", "json_mode"],
            is_flag=True,
            expose_value=False,
            callback=_set_option("json"),
            help="Print results (and errors, warnings) as JSON.",
        ),
        click.Option(
            ["-q", "--quiet"],
            is_flag=True,
            expose_value=False,
            callback=_set_option("quiet"),
            help="No progress bars or notes.",
        ),
    ]
    return command
