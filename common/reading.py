"""Reading the project's small JSON files (manifests, architectures, metrics, histories) for users:
a missing, unreadable or malformed file is one UserError that names it and says what it should be."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.errors import UserError


def read_json(path: Path | str, what: str, where: str = "", missing: str = "") -> Any:
    """The JSON content of ``path``.

    ``what`` names the file's role in the errors ("a readable metrics.json of eval/disparity.py"),
    ``where`` the option it came from (``--metrics``), ``missing`` the hint when it does not exist.
    """
    path = Path(path)
    label = f"{where} {path}" if where else str(path)
    if not path.is_file():
        raise UserError(f"{label}: not found{f' ({missing})' if missing else ''}")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:  # ValueError: JSONDecodeError and UnicodeDecodeError
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise UserError(f"{label}: not {what} (not valid JSON: {reason})") from None
