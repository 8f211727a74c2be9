"""User-facing errors: one line, exit code 2, no traceback.

Every CLI wraps its main in :func:`run_cli`; library code raises :class:`UserError`
with a sentence that names the file, dataset or option and what was expected.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """A mistake in the user's input (file, dataset, option), reported without a traceback."""


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run a CLI main function, turning :class:`UserError` into one line on stderr and exit code 2."""
    try:
        code = main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
