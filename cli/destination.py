"""What `-o` names, read strictly, and whether it can be written, checked before any coding work.

`-o` is one of: '-' (stdout, one input), a file name (one input), or a folder: an existing one, or a name
ending in '/' (created). Anything else is a usage error (exit 2) that says what to type: an empty name, a
name that starts with '-' (almost always an option swallowed as the output, as in `-o -q 50`; write
`./-name` for a file really called that), several inputs with a file name, or a folder name whose path
is an existing file. Whether the destination can be written is io.check_writable's (io.probe_folder)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import click

from .io import BadInput

__all__ = ["OutputKind", "output_kind", "check_output_name"]

OutputKind = Literal["stdout", "file", "folder"]


def check_output_name(output: str, example: str = "out.vq") -> None:
    """Usage error for an `-o` value that cannot be meant as an output name: '' or an option-like '-x'."""
    if output == "":
        raise click.UsageError(f"-o is empty; give an output name, e.g. -o {example} ('-' for stdout)")
    if output.startswith("-") and output != "-":
        raise click.UsageError(
            f"-o {output}: looks like an option, not an output name; put the output name right after -o "
            f"(e.g. -o {example}), or write ./{output} for a file of that name")


def _names_folder(output: str) -> bool:
    return output.endswith(("/", os.sep)) or (output != "-" and Path(output).is_dir())


def output_kind(inputs: tuple[str, ...], output: str, example: str = "out.vq") -> OutputKind:
    """How `-o output` is read for these inputs (see the module docstring); click.UsageError (exit 2) with
    what to type instead when it cannot be read."""
    check_output_name(output, example)
    folder = _names_folder(output)
    if folder:
        stem = output.rstrip("/" + os.sep)
        if stem and Path(stem).exists() and not Path(stem).is_dir():
            raise click.UsageError(f"-o {output}: {stem} is a file, not a folder; give a new folder name ending in "
                                   f"'/' (e.g. -o {stem}.d/)" + ("" if len(inputs) > 1 else
                                                                 f" or a file name (e.g. -o {example})"))
        return "folder"
    if len(inputs) == 1:
        return "stdout" if output == "-" else "file"
    if output == "-":
        raise click.UsageError("-o -: stdout takes one file; give an output folder ending in '/' for several")
    if Path(output).exists():
        raise click.UsageError(f"-o {output}: several inputs need an output folder, and {output} is a file; give a "
                               "folder name ending in '/', e.g. -o out/")
    raise click.UsageError(f"-o {output}: {len(inputs)} inputs need an output folder: an existing one, or a name "
                           f"ending in '/' (e.g. -o {output}/ to create it)")
