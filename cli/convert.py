"""`vqcodec convert IN.vq --speaker ID -o OUT.wav`: decode coded speech in another training speaker's voice,
through the public API (vqcodec.convert_speaker), with the optional speaker decoder."""
from __future__ import annotations

import time

import click

from .audio_io import audio_format, write_audio
from .destination import check_output_name
from .io import BadInput, check_writable, read_input
from .options import plural

__all__ = ["convert"]


@click.command()
@click.argument("input_path", metavar="IN.vq", type=str, required=False)
@click.option("-o", "--output", "output", default=None,
              help="Output audio file: .wav, .flac or .ogg ('-' writes WAV to stdout).")
@click.option("--speaker", default=None,
              help="A training speaker id (LibriSpeech train-clean-100 reader id, e.g. 1088); --list-speakers "
                   "shows the 251 valid ones.")
@click.option("-l", "--layers", type=click.IntRange(min=1), default=None,
              help="Quality layers decoded (as decode --layers). Default: the speaker decoder's default (the "
                   "count that converted best in benchmarks/speaker_conversion.py; more layers keep more of the "
                   "source's voice).")
@click.option("--stages", "stages", type=click.IntRange(min=1), default=None, hidden=True,
              help="The former name of --layers.")
@click.option("--list-speakers", is_flag=True, help="Print the valid speaker ids (one per line: ID SEX) and exit.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
def convert(input_path: str | None, output: str | None, speaker: str | None, layers: int | None,
            stages: int | None, list_speakers: bool, force: bool) -> None:
    """Decode an audio .vq file in the voice of another training speaker (the VQ-VAE paper's speaker
    conversion experiment), e.g. `vqcodec convert speech.vq --speaker 1088 -o out.wav`.

    Needs the optional speaker decoder (codec/weights/audio_speaker_decoder.safetensors); coding never does.
    It speaks only as the 251 LibriSpeech training speakers, and the result is an experiment, not a
    voice converter: see codec/audio/MODEL_CARD.md ("Speaker decoder") for what it does and does not do.
    """
    from vqcodec import api

    if stages is not None:
        if layers is not None:
            raise click.UsageError("give --layers (or its former name --stages), not both")
        layers = stages
    if list_speakers:
        for sid, sex in api.list_speakers():
            click.echo(f"{sid} {sex}")
        return
    missing = [name for name, v in (("IN.vq", input_path), ("-o", output), ("--speaker", speaker)) if v is None]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)}: vqcodec convert IN.vq --speaker ID -o OUT.wav "
                               "(--list-speakers shows the ids)")
    check_output_name(output, "out.wav")
    check_writable(output, force)
    audio_format(output)
    _check_speaker(str(speaker).strip(), [sid for sid, _ in api.list_speakers()])
    data = read_input(input_path)
    t0 = time.perf_counter()
    try:
        header = api.inspect(data)
        if header.modality != "audio":
            raise BadInput(f"{input_path}: holds an image; speaker conversion is for coded speech")
        if layers is not None and layers > header.layers:
            click.echo(f"vqcodec: warning: --layers {layers}, but {input_path} holds "
                       f"{plural(header.layers, 'quality layer')}; converting all {header.layers}", err=True)
            layers = header.layers
        samples, rate = api.convert_speaker(data, speaker, layers=layers)
    except api.VQFormatError as e:
        raise BadInput(f"{input_path}: {e}") from None
    except ValueError as e:
        raise BadInput(f"{input_path}: {e}") from None
    write_audio(output, [samples], rate, samples.shape[1], force)  # atomic: a temporary file, then renamed
    if output != "-":
        click.echo(f"{input_path} -> {output}: {len(samples) / rate:.2f} s at {rate} Hz as speaker {speaker}, "
                   f"{time.perf_counter() - t0:.2f} s", err=True)


def _check_speaker(speaker: str, known: list[str], shown: int = 8) -> None:
    """BadInput (exit 1, as before) for a speaker id the speaker decoder does not know: a short hint (the first
    few ids and where to see them all), not the whole list."""
    if speaker in known:
        return
    examples = ", ".join(known[:shown]) + (", ..." if len(known) > shown else "")
    raise BadInput(f"unknown speaker {speaker!r}: give one of the {len(known)} training speaker ids "
                           f"({examples}); `vqcodec convert --list-speakers` lists them all")
