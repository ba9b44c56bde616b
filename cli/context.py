"""Global options and the one way commands open a worktree."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import click

import cas
from cas.api import Repo
from cas.progress import Progress

from .progress import make_progress


@dataclass
class Options:
    """What the global options say."""

    directory: Path
    json: bool
    quiet: bool
    debug: bool
    cache_dir: Path | None

    def open_repo(self) -> Repo:
        """The worktree containing ``-C DIR`` (or the current directory)."""
        return cas.open(self.directory, cache_dir=self.cache_dir, progress=self.progress())

    def progress(self) -> Progress:
        """A progress reporter fitting the options."""
        return make_progress(quiet=self.quiet, json_mode=self.json)


def cache_dir_from_env() -> Path | None:
    """``CAS_CACHE_DIR`` if set (the CLI is the only layer reading the environment)."""
    value = os.environ.get("CAS_CACHE_DIR")
    return Path(value) if value else None


pass_options = click.make_pass_decorator(Options)
