"""File-system helpers shared by the CLI, the weights writers and the training checkpoints."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "default_file_mode"]


def default_file_mode() -> int:
    """The permission bits open() gives a new file: 0o666 minus the process umask.

    Atomic writers create their temporary file with mkstemp or a library (0600); they set this mode
    before renaming, so the result is as readable as any other new file.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, fill: Callable[[str], None], mode: int | None = None,
                 before_replace: Callable[[], None] | None = None) -> None:
    """Write `path` so that it is either the old file or the complete new one, never a torn mix.

    `fill(tmp)` writes the content to a temporary file in the same folder; the file then gets `mode`
    (default: `default_file_mode()`), is flushed to disk and renamed over `path`. `before_replace` runs
    just before the rename and may raise to refuse it. On any failure the temporary file is removed.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        fill(tmp)
        os.chmod(tmp, default_file_mode() if mode is None else mode)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the file
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
