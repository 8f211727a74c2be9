"""User-facing errors: one line, exit code 2, no traceback.

Every CLI wraps its main in :func:`run_cli`; library code raises :class:`UserError`
with a sentence that names the file, dataset or option and what was expected.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable


class UserError(Exception):
    """A mistake in the user's input (file, dataset, option), reported without a traceback."""


# OS errors that are the user's situation, not a bug: what each says about the path it names.
_OS_ERROR_MEANINGS = {
    errno.ENOSPC: "disk full at {path} (free some space and run again; earlier outputs are intact)",
    errno.EDQUOT: "disk quota exceeded at {path}",
    errno.ENOTDIR: "{path}: a part of this path is a file, not a folder",
    errno.EEXIST: "{path}: exists and is not a folder",
    errno.EISDIR: "{path}: is a folder, expected a file",
    errno.EACCES: "{path}: permission denied",
    errno.EPERM: "{path}: operation not permitted",
    errno.EROFS: "{path}: the file system is read-only",
}


def os_error_message(err: OSError) -> str | None:
    """The one-line user message for an OS error about the user's paths, None for any other."""
    template = _OS_ERROR_MEANINGS.get(err.errno or -1)
    if template is None:
        return None
    path = err.filename if err.filename is not None else "the output folder"
    return template.format(path=path)


def user_error_from_os(err: OSError) -> UserError | OSError:
    """Wrap an OS error as a UserError when it is the user's situation (``raise user_error_from_os(e) from None``)."""
    message = os_error_message(err)
    return UserError(message) if message is not None else err


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run a CLI main function, turning :class:`UserError` into one line on stderr and exit code 2."""
    try:
        code = main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        if (message := os_error_message(err)) is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
