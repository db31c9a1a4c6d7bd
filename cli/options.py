"""Options every `vqcodec` command shares: `-v/--verbose` (before or after the subcommand) and the progress
choice, with the state they set for the rest of the CLI (`is_verbose`, `show_progress`). Imports no model."""
from __future__ import annotations

import logging
import sys

import click

__all__ = ["verbose_option", "progress_option", "is_verbose", "reset_verbose", "show_progress", "plural",
           "EXIT_TARGET_MISSED"]

EXIT_TARGET_MISSED = 3
"""Exit status of `vqcodec encode` when a --size / --bpp target could not be met: the file is written anyway
(at the smallest reachable size) and a warning says what that size is. 1 is bad input, 2 a usage error."""

_verbose = False


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    global _verbose
    if value:
        _verbose = True
        logging.getLogger().setLevel(logging.INFO)


def verbose_option() -> click.Option:
    """A fresh `-v/--verbose` flag: log progress details to stderr, tracebacks for errors, per-file lines in
    batches. Eager, so it takes effect even when the command's other options are wrong."""
    return click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, is_eager=True, callback=_set_verbose,
                        help="Log progress details, per-file lines and tracebacks to stderr.")


def is_verbose() -> bool:
    """Whether -v/--verbose was given anywhere on the command line."""
    return _verbose


def reset_verbose() -> None:
    """Forget an earlier command line's -v (the `vqcodec` group calls this before parsing each one)."""
    global _verbose
    _verbose = False


def progress_option():
    """The `--progress/--no-progress` decorator of the coding commands (default: when stderr is a terminal)."""
    return click.option("--progress/--no-progress", "progress", default=None,
                        help="A progress bar on stderr (batches: one bar counting the files instead of a line per "
                             "file)  [default: when stderr is a terminal].")


def show_progress(choice: bool | None) -> bool:
    """The --progress choice, or by default whether stderr is a terminal."""
    return sys.stderr.isatty() if choice is None else choice


def plural(n: int, word: str) -> str:
    """'1 layer', '2 layers', '0 files'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
