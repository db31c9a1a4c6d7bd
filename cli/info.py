"""`vqcodec info IN.vq...`: what .vq files hold, from their headers, through the public API's `inspect`
(which imports no model: `info` starts without torch).

One file: a description (what it is, size and rate, the quality and effort it was made at, quality layers,
models, metadata). Several: a table, one row per file. `--json`: an object for one file, a list of objects
for several. A file that cannot be read gets its error line and the others go on; the exit status is 1 if any
file failed."""
from __future__ import annotations

import json

import click

from .io import BadInput, read_input
from .options import plural

__all__ = ["info", "describe"]


def describe(name: str) -> dict:
    """The JSON-able description of the .vq file `name` ('-': stdin); BadInput for an unreadable one.
    quality / effort: the encoder settings the file records (None when it records none: files of 0.4.1 and
    earlier); audio's quality scale is its layer count, so an audio file's quality is its layers."""
    from vqcodec import api

    data = read_input(name)
    try:
        fi = api.inspect(data)
    except api.VQFormatError as e:
        raise BadInput(f"{name}: {e}") from None
    d: dict = {
        "file": name,
        "format_version": fi.format_version,
        "modality": fi.modality,
        "layers": fi.layers,
        "quality": fi.quality if fi.modality == "image" else fi.layers,
        "effort": fi.effort,
        "models": [{"role": r, "model_id": m, "weights_hash": h} for r, m, h in fi.components],
        "layer_bytes": list(fi.layer_bytes),
        "vq_layers": fi.vq_layers,
        "file_bytes": fi.file_bytes,
    }
    if fi.modality == "image":
        d.update(width=fi.width, height=fi.height, mode=fi.mode, bpp=fi.bits_per_pixel,
                 metadata={key: len(value) for key, value in fi.metadata})
    else:
        d.update(sample_rate=fi.sample_rate, channels=fi.channels, num_samples=fi.num_samples,
                 duration_s=fi.duration_s, kbps=fi.kbps)
    return d


def _what(d: dict) -> str:
    if d["modality"] == "image":
        return f"{d['width']}x{d['height']} {d['mode']}"
    return f"{d['duration_s']:.2f} s, {d['sample_rate']} Hz, {d['channels']} ch"


def _rate(d: dict) -> str:
    return f"{d['bpp']:.3f} bpp" if d["modality"] == "image" else f"{d['kbps']:.2f} kbit/s"


def _setting(value: int | None) -> str:
    return "-" if value is None else str(value)


def _details(d: dict) -> list[str]:
    """The lines of a one-file description."""
    made = f"quality {_setting(d['quality'])}" + (f", effort {d['effort']}" if d["effort"] is not None else "")
    if d["modality"] == "image" and d["quality"] is None:
        made = "quality and effort not recorded (written by vqcodec 0.4.1 or earlier)"
    lines = [f"{d['file']}: vqcodec {d['modality']}, {_what(d)}, {d['file_bytes']} bytes ({_rate(d)}), "
             f"{plural(d['layers'], 'quality layer')}, format version {d['format_version']}",
             f"  made at: {made}"]
    lines += [f"  {m['role']}: {m['model_id']} (weights {m['weights_hash']})" for m in d["models"]]
    vq = d["vq_layers"]
    lines += [f"  layer {i}: {plural(n, 'byte')}" + (f" (refinement layer {i - vq})" if i > vq else "")
              for i, n in enumerate(d["layer_bytes"], 1)]
    lines += [f"  metadata {key}: {plural(n, 'byte')}" for key, n in d.get("metadata", {}).items()]
    return lines


_COLUMNS = ("FILE", "KIND", "WHAT", "BYTES", "RATE", "LAYERS", "QUALITY", "EFFORT")


def _table(rows: list[dict]) -> list[str]:
    """A table of several files, one row each, columns aligned (numbers to the right)."""
    cells = [_COLUMNS] + [(d["file"], d["modality"], _what(d), str(d["file_bytes"]), _rate(d), str(d["layers"]),
                           _setting(d["quality"]), _setting(d["effort"])) for d in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    right = {3, 4, 5, 6, 7}
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
            for row in cells]


@click.command()
@click.argument("inputs", metavar="IN.vq...", type=str, nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: an object for one file, a list of objects for several.")
def info(inputs: tuple[str, ...], as_json: bool) -> None:
    """Show what .vq files hold: what each is, its size and rate, the quality and effort it was made at, its
    quality layers, the models that made it. One file: a description; several (e.g. coded/*.vq): a table."""
    if len(inputs) == 1:  # one file: its error is the one line
        d = describe(inputs[0])
        click.echo(json.dumps(d, indent=2) if as_json else "\n".join(_details(d)))
        return
    rows, failed = [], 0
    for name in inputs:
        try:
            rows.append(describe(name))
        except click.ClickException as e:
            failed += 1
            click.echo(f"vqcodec: error: {e.format_message()}", err=True)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    elif rows:
        for line in _table(rows):
            click.echo(line)
    if failed:
        raise BadInput(f"{failed} of {plural(len(inputs), 'file')} could not be read")
