"""File-system helpers shared by the CLI, the weights writers and the training checkpoints."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write", "default_file_mode", "list_files"]


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


def list_files(folder: str | Path, suffixes: tuple[str, ...], kind: str, recursive: bool = False) -> list[Path]:
    """Sorted files of `folder` (and, `recursive`, its subfolders) whose suffix, lower-cased, is one of
    `suffixes`. Raises FileNotFoundError when the folder is missing and ValueError when it holds none, naming
    `kind` (e.g. "image") and the suffixes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{kind} folder not found: {folder}")
    found = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(p for p in found if p.suffix.lower() in suffixes and (not recursive or p.is_file()))
    if not files:
        where = f"{folder} or its subfolders" if recursive else str(folder)
        raise ValueError(f"no {kind} files ({', '.join(suffixes)}) in {where}")
    return files
