"""The CLI's per-file jobs: encode one input file, decode one .vq file, through the public API (vqcodec.api).

`vqcodec encode` / `decode` run one of these for a single file (commands.py) or one per input in worker
processes (batch.py). The modality of `encode_file` follows the input (an image Pillow reads, or audio
soundfile reads); `decode_file` follows the .vq file's header.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, NamedTuple

import click

from vqcodec.contract import Progress

from .audio_io import audio_format, check_audio_header, is_audio_name, looks_like_audio, read_audio, write_audio
from .io import BadInput, check_image_output, check_writable, image_file_bytes, read_image, read_input, write_output
from .options import plural

__all__ = ["encode_file", "decode_file", "Encoded", "check_image_only"]


class Encoded(NamedTuple):
    """What `encode_file` reports: the summary line, and the warning of a missed --size / --bpp target (the
    smallest reachable size) or None."""

    line: str
    missed: str | None = None


def _check_quality(quality: int | None, modality: str, name: str = "") -> None:
    from vqcodec import api

    top = api.max_quality(modality)
    if quality is not None and not 1 <= quality <= top:
        if name:  # one file of a batch: its own line, not a usage error of the whole command
            raise BadInput(f"{name}: --quality must be 1..{top} for {modality}")
        raise click.BadParameter(f"must be 1..{top} for {modality}", param_hint="--quality")


def check_image_only(modality: str, name: str, **options: object) -> None:
    """Refuse image-only options (those given: not None, not False) for an audio input, all by one rule: a
    usage error (exit 2) for a single file, that file's error line in a batch (`name` given)."""
    given = [f"--{k}" for k, v in options.items() if v is not None and v is not False]
    if modality == "image" or not given:
        return
    what = ", ".join(given)
    verb, pronoun = ("applies", "it") if len(given) == 1 else ("apply", "them")
    message = f"{what} {verb} to images only; leave {pronoun} out for audio"
    if name:
        raise BadInput(f"{name}: {message}")
    raise click.UsageError(f"{message} (the input is audio)")


def encode_file(src: str, dst: str, quality: int | None, alpha: str | None, verify: bool, force: bool,
                progress: Progress | None = None, batch: bool = False, strip: bool = False, effort: int | None = None,
                bpp: float | None = None, size: int | None = None) -> Encoded:
    """Encode one input file (or '-') to `dst` (or '-'); returns the summary line and, when a --size / --bpp
    target could not be met (the file is written anyway, at the smallest reachable size), the warning that says
    so. Raises BadInput for bad input.

    Images only (refused for audio, `check_image_only`): alpha (None: "keep"), strip, effort 1..3; bpp or size
    (bytes): the highest quality within that size (instead of quality)."""
    from vqcodec import api

    check_writable(dst, force)
    data = read_input(src, head=64) if is_audio_name(src) else read_input(src)
    modality = "audio" if looks_like_audio(data, src) else "image"
    _check_quality(quality, modality, src if batch else "")
    check_image_only(modality, src if batch else "", alpha=alpha, strip=strip, effort=effort, bpp=bpp, size=size)
    missed: str | None = None
    try:
        if modality == "image":
            img = read_image(data, src)
            max_bytes = size if bpp is None else max(1, int(bpp * img.width * img.height / 8))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", api.TargetMissedWarning)
                encoded = api.encode_image(img, quality, alpha=alpha or "keep", strip=strip, effort=effort,
                                           max_bytes=max_bytes, progress=progress, verify=verify)
            missed = next((_missed_line(src, w.message, bpp, img.width * img.height) for w in caught
                           if isinstance(w.message, api.TargetMissedWarning)), None)
        elif src == "-":
            samples, rate = read_audio(data, src)
            encoded = api.encode_audio(samples, rate, quality, progress=progress, verify=verify)
        else:  # streamed from the file: memory does not grow with its length
            check_audio_header(src)
            encoded = api.encode_audio_file(src, quality, progress=progress, verify=verify)
    except ValueError as e:
        raise BadInput(f"{src}: {e}") from None
    write_output(dst, encoded, force)
    info = api.inspect(encoded)
    what = (f"{info.width}x{info.height} {info.mode}, {info.bits_per_pixel:.3f} bpp" if modality == "image"
            else f"{info.duration_s:.2f} s, {info.channels} ch, {info.kbps:.2f} kbit/s")
    line = f"{src} -> {dst}: {what}, {plural(info.layers, 'layer')}, {len(encoded)} bytes"
    return Encoded(line + (", verified" if verify else ""), missed)


def _missed_line(src: str, warning: object, bpp: float | None, pixels: int) -> str:
    """The warning line of a missed --size / --bpp target, in the unit the user gave."""
    from vqcodec import api

    assert isinstance(warning, api.TargetMissedWarning)
    if bpp is None or warning.smallest is None:
        return f"{src}: {f'--bpp {bpp:g}' if bpp is not None else f'--size {warning.target}'}: {warning}"
    return (f"{src}: --bpp {bpp:g}: cannot reach it: the smallest this image codes to is "
            f"{8 * warning.smallest / pixels:.3f} bpp ({warning.smallest} bytes, quality 1); wrote that")


def decode_file(src: str, dst: str, layers: int | None, force: bool, progress: Progress | None = None, *,
                partial: bool = False, decoder: str | None = None) -> str:
    """Decode one .vq file (or '-') to `dst` (or '-'), image or audio by what it holds; returns the summary line.
    partial: a file cut short gives its complete quality layers (`_complete_layers`), named in the line.
    decoder: what renders the file's indices instead of the decoder it names (`api.decode`'s `decoder`)."""
    from vqcodec import api

    check_writable(dst, force)
    data = read_input(src)
    note = ""
    try:
        if partial:
            data, layers, note = _complete_layers(data, layers)
        header = api.inspect(data)
        if layers is not None and layers > header.layers:
            click.echo(f"vqcodec: warning: {src}: --layers {layers}, but the file holds "
                       f"{plural(header.layers, 'quality layer')}; decoding all {header.layers}", err=True)
            layers = header.layers
        if header.modality == "image":
            check_image_output(dst, header.mode)  # before decoding: an output type that would lose alpha
            with _blamed_on_decoder(decoder):
                img = api.decode(data, layers=layers, progress=progress, decoder=decoder)
            write_output(dst, image_file_bytes(img, dst), force)
            return f"{src} -> {dst}: {img.width}x{img.height} {img.mode}{note}"
        audio_format(dst)
        with _blamed_on_decoder(decoder):
            rate, channels, num_samples, blocks = api.decode_audio_blocks(data, layers=layers, progress=progress,
                                                                          decoder=decoder)
        del data  # parsed: the file's streams are held once, not twice
        write_audio(dst, blocks, rate, channels, force, num_samples)  # rendered block by block while written
    except api.VQFormatError as e:
        raise BadInput(f"{src}: {e}") from None
    return f"{src} -> {dst}: {num_samples / rate:.2f} s at {rate} Hz, {channels} ch{note}"


@contextlib.contextmanager
def _blamed_on_decoder(decoder: str | None) -> Iterator[None]:
    """With `--decoder`, a ValueError or FileNotFoundError inside is the decoder's: BadInput naming it. A
    VQFormatError stays the file's own (reported with the file's name by the caller)."""
    from vqcodec import api

    try:
        yield
    except api.VQFormatError:
        raise
    except (ValueError, FileNotFoundError) as e:
        if decoder is None:
            raise
        raise BadInput(f"--decoder {decoder}: {e}") from None


def _complete_layers(data: bytes, layers: int | None) -> tuple[bytes, int | None, str]:
    """`decode --partial`: (the file of `data`'s complete quality layers, the layers to decode: `layers` capped
    at those, a note for the summary line: empty for a whole file)."""
    from vqcodec import api

    prefix, used, cut = api.complete_layers(data, layers)
    if not cut:
        return data, layers, ""
    return prefix, used, f" (cut file: decoded {plural(used, 'complete quality layer')} of {len(data)} bytes)"
