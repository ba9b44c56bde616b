"""One module per command; :data:`COMMANDS` lists them for the group."""

from __future__ import annotations

from ..context import add_output_options
from .branch import branch
from .checkout import checkout
from .clone import clone
from .commit import commit
from .diff import diff
from .du import du
from .init import init
from .log import log
from .ls import ls
from .repair import repair
from .show import show
from .status import status
from .tag import tag
from .verify import verify

COMMANDS = [
    init,
    clone,
    status,
    diff,
    commit,
    checkout,
    log,
    show,
    ls,
    tag,
    branch,
    du,
    verify,
    repair,
]

# Every command also takes --json and -q/--quiet after its name (`cas status --json`).
for _command in COMMANDS:
    add_output_options(_command)
