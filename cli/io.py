"""File handling for the CLI: '-' for stdin/stdout, no overwriting without --force, atomic writes; reading input
images by vqcodec's input policy (one-line refusals) and writing decoded images with their metadata."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

import click

from vqcodec.files import atomic_write

__all__ = ["read_input", "write_output", "write_output_with", "check_writable", "probe_folder", "BadInput", "IMAGE_FORMATS",
           "image_format", "check_image_output", "read_image", "image_file_bytes"]


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
    """Refuse to overwrite an existing file unless --force; check the folder exists and takes new files
    (`probe_folder`), so that an unwritable destination fails before any coding work."""
    if path == "-":
        return
    p = Path(path)
    if p.exists() and not force:
        raise BadInput(f"{path} exists; pass --force to overwrite it")
    if p.is_dir():
        raise BadInput(f"{path} is a directory; give a file name")
    if not p.resolve().parent.is_dir():
        raise BadInput(f"{p.parent}: folder does not exist; create it first, or give -o a path in an existing folder")
    probe_folder(p.resolve().parent, path)


def probe_folder(folder: Path, user_path: str) -> None:
    """BadInput (exit 1) naming `user_path` unless a file can be created in `folder` (a temporary file is
    created and removed, as the atomic write will)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".vqcodec-probe.", suffix=".part", dir=folder)
    except OSError as e:
        raise BadInput(f"cannot write {user_path}: {folder} does not accept new files ({e.strerror}); give -o a "
                       "path in a folder you can write to") from None
    os.close(fd)
    os.unlink(tmp)


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


# ------------------------------------------------------------------------------------------------ images
IMAGE_FORMATS = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
                 ".jpg": "JPEG", ".jpeg": "JPEG", ".ppm": "PPM"}
"""Output image types by extension ('-' writes PNG)."""
_ALPHA_FORMATS = {"PNG", "TIFF", "WEBP"}
"""Output types that keep an alpha channel (BMP's is ignored by most readers, JPEG and PPM have none)."""


def image_format(out_path: str) -> str:
    """The Pillow format of an output name ('-' is PNG); BadInput for an extension vqcodec does not write."""
    suffix = Path(out_path).suffix.lower() if out_path != "-" else ".png"
    fmt = IMAGE_FORMATS.get(suffix)
    if fmt is None:
        raise BadInput(f"{out_path}: unknown image type {suffix!r}; use one of {', '.join(sorted(IMAGE_FORMATS))}")
    return fmt


def check_image_output(out_path: str, mode: str) -> str:
    """The format to write an image of `mode` to `out_path`, refusing one that would lose its alpha channel."""
    fmt = image_format(out_path)
    if mode in ("RGBA", "LA") and fmt not in _ALPHA_FORMATS:
        raise BadInput(f"{out_path}: {fmt} cannot hold this image's alpha channel; decode to .png, .webp or .tif "
                       "to keep the transparency")
    return fmt


def read_image(data: bytes, name: str):
    """Image file bytes -> a loaded PIL image, or BadInput with one line (empty, not an image, corrupt or
    truncated, too large: refused before its pixels are decoded, animated). See vqcodec.image.input."""
    from vqcodec.image.input import ImageInputError, open_image

    try:
        return open_image(data, name)
    except ImageInputError as e:
        raise BadInput(str(e)) from None


def image_file_bytes(img, out_path: str) -> bytes:
    """A decoded PIL image (RGB, RGBA, L or LA, with `info` icc_profile / exif / xmp) -> the bytes of the image
    file `out_path` names by its extension (PNG for '-'), its metadata written where the format holds it
    (vqcodec.image.metadata). WebP is written lossless; gray + alpha goes to WebP as RGBA."""
    import io

    from vqcodec.image.metadata import ImageMetadata

    fmt = check_image_output(out_path, img.mode)
    if fmt == "WEBP" and img.mode == "LA":
        img = img.convert("RGBA")
    options = ImageMetadata.from_pil_info(img.info).save_options(fmt, img.mode)
    if fmt == "WEBP":
        options["lossless"] = True
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt, **options)
    except (OSError, ValueError) as e:
        raise BadInput(f"{out_path}: cannot write it as {fmt} ({e})") from None
    return buf.getvalue()
