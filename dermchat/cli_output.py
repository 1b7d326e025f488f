"""The shared tail of the figure-printing sub-commands (`eval`, `bench-quality`, `eval-rag`, `study`).

Why one helper: every such command ends the same way (figures as JSON for machines or a table for
people; a data problem is one `error:` line on stderr and exit status 2, never a traceback), and
scripts that call several of them rely on that contract being identical.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

DATA_ERROR_STATUS = 2


def fail(message: object) -> int:
    """Report a problem with the user's input in one line and return the exit status to use."""
    print(f"error: {message}", file=sys.stderr)
    return DATA_ERROR_STATUS


def emit(figures: Any, as_json: bool, human: Callable[[Any], None], indent: int = 1) -> int:
    """Print `figures` as JSON or through `human`, and return exit status 0."""
    if as_json:
        print(json.dumps(figures, indent=indent))
    else:
        human(figures)
    return 0
