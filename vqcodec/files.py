"""File-system helpers shared by the CLI and the weights writer."""
from __future__ import annotations

import os

__all__ = ["default_file_mode"]


def default_file_mode() -> int:
    """The permission bits open() gives a new file: 0o666 minus the process umask.

    Atomic writers create their temporary file with mkstemp or a library (0600); they set this mode
    before renaming, so the result is as readable as any other new file.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
