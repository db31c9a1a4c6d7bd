"""File handling for the CLI: '-' for stdin/stdout, no overwriting without --force, atomic writes."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import click

from vqcodec.files import atomic_write

__all__ = ["read_input", "write_output", "write_output_with", "check_writable", "BadInput"]


class BadInput(click.ClickException):
    """A problem with the user's input file: one line on stderr, exit code 1."""

    exit_code = 1

    def show(self, file=None) -> None:  # one line, no "Usage:" block
        click.echo(f"vqcodec: error: {self.format_message()}", err=True)


def read_input(path: str, head: int | None = None) -> bytes:
    """Bytes of `path` (only the first `head` bytes if given), or of stdin for '-' (all of it)."""
    if path == "-":
        return sys.stdin.buffer.read()
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{path}: no such file")
    if p.is_dir():
        raise BadInput(f"{path}: is a directory, expected a file")
    try:
        if head is None:
            return p.read_bytes()
        with p.open("rb") as f:
            return f.read(head)
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None


def check_writable(path: str, force: bool) -> None:
    """Refuse to overwrite an existing file unless --force; check the folder exists."""
    if path == "-":
        return
    p = Path(path)
    if p.exists() and not force:
        raise BadInput(f"{path} exists; pass --force to overwrite it")
    if p.is_dir():
        raise BadInput(f"{path} is a directory; give a file name")
    if not p.resolve().parent.is_dir():
        raise BadInput(f"{p.parent}: folder does not exist")


def write_output(path: str, data: bytes, force: bool) -> None:
    """Write `data` to `path` atomically (temporary file in the same folder, then rename), or stdout for '-'."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    write_output_with(path, lambda tmp: Path(tmp).write_bytes(data), force)


def write_output_with(path: str, fill: Callable[[str], None], force: bool) -> None:
    """Create `path` atomically: fill(temporary path) writes the content (streaming if it likes), then the
    temporary file is renamed over `path`; a failure or interruption leaves no partial file."""
    check_writable(path, force)
    p = Path(path).resolve()

    def not_taken_meanwhile() -> None:
        if p.exists() and not force:
            raise BadInput(f"{path} exists; pass --force to overwrite it")

    # the usual mode for a new file, or the mode of the file it replaces
    atomic_write(p, fill,
                 mode=p.stat().st_mode & 0o7777 if p.exists() else None, before_replace=not_taken_meanwhile)
