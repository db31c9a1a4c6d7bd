"""Many files at once: `vqcodec encode a.png b.wav ... -o OUTDIR/` and `vqcodec decode *.vq -o OUTDIR/`.

Output names are the input stems in OUTDIR: `+ .vq` for encode; `+ .png` (images) or `+ .wav` (audio) for
decode, by the file's header. Files are coded by `jobs` worker processes (spawned, each with one torch
thread, so results do not depend on `jobs`); one progress bar counts files; each file's failure is reported
on its own line and the rest go on; the command fails (exit 1) at the end if any file failed.
"""
from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import click

from .io import BadInput, read_input
from .jobs import decode_file, encode_file

__all__ = ["Job", "is_batch", "run_batch", "default_jobs"]


@dataclass(frozen=True)
class Job:
    """One file to code: `command` "encode" or "decode", from `src` to `dst`, with the command's options."""

    command: str
    src: str
    dst: str
    options: tuple[tuple[str, object], ...]


def is_batch(inputs: tuple[str, ...], output: str) -> bool:
    """Several inputs, or an output that names a folder (existing, or ending in '/')."""
    return len(inputs) > 1 or output.endswith(("/", os.sep)) or (output != "-" and Path(output).is_dir())


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _out_folder(output: str) -> Path:
    if output == "-":
        raise click.UsageError("-o -: stdout takes one file; give an output folder ending in '/' for several")
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise click.UsageError(f"-o {output}: several inputs need an output folder; give a folder name ending in '/'")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"{output}: cannot create the output folder ({e.strerror})") from None
    return folder


def _decoded_suffix(src: str) -> str:
    """'.png' or '.wav' for a .vq file, by its header (raises BadInput for an unreadable file)."""
    from vqcodec import api

    try:
        return ".png" if api.inspect(read_input(src)).modality == "image" else ".wav"
    except api.VQFormatError as e:
        raise BadInput(f"{src}: {e}") from None


def plan(command: str, inputs: tuple[str, ...], output: str, options: dict) -> tuple[list[Job], list[str]]:
    """The jobs to run, and the error lines of inputs that cannot even be planned (unreadable, name clash)."""
    if "-" in inputs:
        raise click.UsageError("'-' (stdin) codes one file; give file names to code several")
    folder = _out_folder(output)
    jobs: list[Job] = []
    errors: list[str] = []
    taken: dict[Path, str] = {}
    for src in inputs:
        try:
            suffix = ".vq" if command == "encode" else _decoded_suffix(src)
        except click.ClickException as e:
            errors.append(e.format_message())
            continue
        dst = folder / (Path(src).stem + suffix)
        if dst.resolve() in taken:
            errors.append(f"{src}: its output {dst} is also {taken[dst.resolve()]}'s; code it separately")
            continue
        taken[dst.resolve()] = src
        jobs.append(Job(command, src, str(dst), tuple(sorted(options.items()))))
    return jobs, errors


# ------------------------------------------------------------------------------------------- the workers
def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _encode(src: str, dst: str, quality: int | None, alpha: str, verify: bool, force: bool, strip: bool = False,
            effort: int | None = None, bpp: float | None = None, size: int | None = None) -> str:
    return encode_file(src, dst, quality, alpha, verify, force, batch=True, strip=strip, effort=effort, bpp=bpp,
                       size=size)


def _decode(src: str, dst: str, layers: int | None, force: bool, partial: bool = False) -> str:
    return decode_file(src, dst, layers, force, partial=partial)


def run_job(job: Job) -> tuple[bool, str]:
    """Code one file; never raises: -> (ok, the line to report)."""
    t0 = time.perf_counter()
    try:
        line = (_encode if job.command == "encode" else _decode)(job.src, job.dst, **dict(job.options))
        return True, f"{line}, {time.perf_counter() - t0:.2f} s"
    except click.ClickException as e:
        return False, e.format_message()
    except (OSError, ValueError, RuntimeError) as e:  # e.g. missing weights, unwritable folder, failed --verify
        return False, f"{job.src}: {e}"
    except Exception as e:  # a bug: still reported on one line, the other files go on
        return False, f"{job.src}: internal error: {type(e).__name__}: {e}"


# ------------------------------------------------------------------------------------------- the driver
def run_batch(command: str, inputs: tuple[str, ...], output: str, options: dict, jobs: int | None) -> None:
    """Code every input into the folder `output` with `jobs` workers (None: the cores); report each file
    on stderr; raise BadInput (exit 1) at the end if any file failed."""
    from tqdm import tqdm

    if jobs is not None and jobs < 1:
        raise click.BadParameter("must be >= 1", param_hint="-j/--jobs")
    todo, errors = plan(command, inputs, output, options)
    for line in errors:
        click.echo(f"vqcodec: error: {line}", err=True)
    failed = len(errors)
    workers = max(1, min(jobs or default_jobs(), len(todo)))
    t0 = time.perf_counter()
    with tqdm(total=len(inputs), initial=len(errors), desc=command, unit="file", disable=None, leave=False,
              file=sys.stderr) as bar:
        def report(ok: bool, line: str) -> None:
            nonlocal failed
            failed += not ok
            bar.write(line if ok else f"vqcodec: error: {line}", file=sys.stderr)
            bar.update(1)

        if workers == 1:
            _init_worker()
            for job in todo:
                report(*run_job(job))
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
                futures = [pool.submit(run_job, job) for job in todo]
                try:
                    for f in as_completed(futures):
                        report(*f.result())
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    elapsed = time.perf_counter() - t0
    summary = (f"{command}d {len(inputs) - failed} of {len(inputs)} files into {output} in {elapsed:.2f} s "
               f"({workers} workers)")
    if failed:
        raise BadInput(f"{failed} of {len(inputs)} files failed; {summary}")
    click.echo(summary, err=True)
