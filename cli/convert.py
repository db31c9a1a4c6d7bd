"""`vqcodec convert IN --speaker ID|REF.wav -o OUT.wav`: speak an audio .vq file or any audio file in another
voice, through the public API (vqcodec.convert_speaker) and the optional conversion model."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .audio_io import audio_format, check_audio_header, looks_like_audio, read_audio, write_audio
from .destination import check_output_name
from .io import BadInput, check_writable, read_input
from .options import plural

if TYPE_CHECKING:
    from vqcodec.api import FileInfo

__all__ = ["convert"]


@click.command()
@click.argument("input_path", metavar="IN", type=str, required=False)
@click.option("-o", "--output", "output", default=None,
              help="Output audio file: .wav, .flac or .ogg ('-' writes WAV to stdout). It keeps IN's sample rate, "
                   "channel count and length.")
@click.option("--speaker", default=None,
              help="The voice to speak in: a speaker id of the conversion model's table (--list-speakers shows "
                   "them), or a reference recording of any voice (an existing audio file: a few seconds of speech).")
@click.option("-l", "--layers", type=click.IntRange(min=1), default=None,
              help="For a .vq IN: quality layers decoded before converting (as decode --layers; default all).")
@click.option("--stages", "stages", type=click.IntRange(min=1), default=None, hidden=True,
              help="The former name of --layers.")
@click.option("--list-speakers", is_flag=True,
              help="Print the conversion model's speakers (one per line: ID and median pitch in Hz) and exit.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
def convert(input_path: str | None, output: str | None, speaker: str | None, layers: int | None,
            stages: int | None, list_speakers: bool, force: bool) -> None:
    """Speak IN in another voice: IN is an audio .vq file or any audio file (WAV, FLAC, OGG, ...), e.g.
    `vqcodec convert speech.wav --speaker ls103 -o out.wav` or `vqcodec convert speech.vq --speaker
    voice.wav -o out.wav`.

    Uses the optional conversion model (shipped since 0.7.0; 0.9.0's is audio-conversion-v3; `vqcodec train conversion` makes
    others) and pyworld (pip install pyworld-prebuilt); coding needs neither. The pitch follows the source's
    contour moved into the target's range; the voice is the model's rendering of the target. An experiment: it
    keeps the voice better than the words, see codec/audio/MODEL_CARD.md.
    """
    from vqcodec import api

    if stages is not None:
        if layers is not None:
            raise click.UsageError("give --layers (or its former name --stages), not both")
        layers = stages
    if list_speakers:
        for sid, hz in api.list_speakers():
            click.echo(f"{sid} {hz:.0f} Hz")
        return
    missing = [name for name, v in (("IN", input_path), ("-o", output), ("--speaker", speaker)) if v is None]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)}: vqcodec convert IN --speaker ID|REF.wav -o OUT.wav "
                               "(--list-speakers shows the ids)")
    check_output_name(output, "out.wav")
    check_writable(output, force)
    audio_format(output)
    target = _speaker(speaker, [sid for sid, _ in api.list_speakers()])
    data = read_input(input_path)
    t0 = time.perf_counter()
    try:
        if looks_like_audio(data, input_path):
            if layers is not None:
                raise click.UsageError(f"--layers is for .vq input; {input_path} is an audio file")
            source, rate = read_audio(data, input_path)
            del data
            samples, rate = api.convert_speaker(source, target, sample_rate=rate)
        else:
            layers = _capped_layers(api.inspect(data), input_path, layers)
            samples, rate = api.convert_speaker(data, target, layers=layers)
    except api.VQFormatError as e:
        raise BadInput(f"{input_path}: {e} (IN must be an audio .vq file or an audio file)") from None
    except ModuleNotFoundError as e:
        raise BadInput(str(e)) from None
    except ValueError as e:
        raise BadInput(f"{input_path}: {e}") from None
    write_audio(output, [samples], rate, samples.shape[1], force)  # atomic: a temporary file, then renamed
    if output != "-":
        click.echo(f"{input_path} -> {output}: {len(samples) / rate:.2f} s at {rate} Hz as {speaker}, "
                   f"{time.perf_counter() - t0:.2f} s", err=True)


def _capped_layers(header: "FileInfo", input_path: str, layers: int | None) -> int | None:
    """--layers for a .vq input: BadInput for an image file; above the file's count: a warning, all of them."""
    if header.modality != "audio":
        raise BadInput(f"{input_path}: holds an image; speaker conversion is for speech")
    if layers is not None and layers > header.layers:
        click.echo(f"vqcodec: warning: --layers {layers}, but {input_path} holds "
                   f"{plural(header.layers, 'quality layer')}; converting all {header.layers}", err=True)
        return header.layers
    return layers


def _speaker(speaker: str, known: list[str]) -> str | Path:
    """--speaker -> what the API takes: an existing file is a reference recording (a Path); anything else must be
    a speaker id of the table (BadInput with a short hint otherwise)."""
    if Path(speaker).is_file():
        check_audio_header(speaker)  # an unreadable reference fails here, naming itself
        return Path(speaker)
    _check_speaker(speaker.strip(), known)
    return speaker.strip()


def _check_speaker(speaker: str, known: list[str], shown: int = 8) -> None:
    """BadInput (exit 1) for a --speaker that is neither a file nor a speaker id of the model: a short hint (the
    first few ids and where to see them all), not the whole list."""
    if speaker in known:
        return
    if f"ls{speaker}" in known:  # 0.4..0.6's speaker decoder took bare LibriSpeech reader ids
        raise BadInput(f"unknown speaker {speaker!r}: LibriSpeech readers are 'ls<reader id>' in the conversion "
                       f"model's table since 0.7.0: use --speaker ls{speaker}")
    examples = ", ".join(known[:shown]) + (", ..." if len(known) > shown else "")
    raise BadInput(f"unknown speaker {speaker!r}: not a file nor one of the model's {len(known)} speaker ids "
                   f"({examples or 'none'}); see `vqcodec convert --list-speakers`, or give a recording of the voice")
