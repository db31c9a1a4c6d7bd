"""Many files at once: `vqcodec encode a.png b.wav ... -o OUTDIR/` and `vqcodec decode *.vq -o OUTDIR/`.

Output names are the input stems in OUTDIR: `+ .vq` for encode; `+ .png` (images) or `+ .wav` (audio) for
decode, by the file's header. Files are coded by `jobs` worker processes (spawned, each with one torch
thread, so results do not depend on `jobs`). On a terminal (or with --progress) one progress bar counts the
files; otherwise (or with -v as well) each file gets a line. Each file's failure is reported on its own line
and the rest go on; the command fails (exit 1) at the end if any file failed.
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

from .destination import output_kind
from .io import BadInput, probe_folder, read_input
from .jobs import decode_file, encode_file
from .options import EXIT_TARGET_MISSED, is_verbose, plural, show_progress

__all__ = ["Job", "is_batch", "run_batch", "default_jobs"]


@dataclass(frozen=True)
class Job:
    """One file to code: `command` "encode" or "decode", from `src` to `dst`, with the command's options."""

    command: str
    src: str
    dst: str
    options: tuple[tuple[str, object], ...]


def is_batch(inputs: tuple[str, ...], output: str, example: str = "out.vq") -> bool:
    """Whether `-o output` names a folder (existing, or ending in '/'); click.UsageError for an `-o` that
    cannot be read for these inputs (destination.output_kind: several inputs and a file name, '', '-x')."""
    return output_kind(inputs, output, example) == "folder"


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _out_folder(output: str) -> Path:
    """The output folder (created if need be), checked to take new files before any file is coded."""
    folder = Path(output)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"cannot create the output folder {output} ({e.strerror}); give -o a folder you can "
                       "write to") from None
    probe_folder(folder, output)
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


def _encode(src: str, dst: str, quality: int | None, alpha: str | None, verify: bool, force: bool,
            strip: bool = False, effort: int | None = None, bpp: float | None = None, size: int | None = None
            ) -> tuple[str, str | None]:
    return encode_file(src, dst, quality, alpha, verify, force, batch=True, strip=strip, effort=effort, bpp=bpp,
                       size=size)


def _decode(src: str, dst: str, layers: int | None, force: bool, partial: bool = False,
            decoder: str | None = None) -> tuple[str, str | None]:
    return decode_file(src, dst, layers, force, partial=partial, decoder=decoder), None


OK, MISSED, FAILED = "ok", "missed", "failed"
"""run_job's outcomes: coded; coded, but a --size / --bpp target was missed (exit 3); not coded (exit 1)."""


def run_job(job: Job) -> tuple[str, str]:
    """Code one file; never raises: -> (OK | MISSED | FAILED, the line to report; for MISSED the warning)."""
    t0 = time.perf_counter()
    try:
        line, missed = (_encode if job.command == "encode" else _decode)(job.src, job.dst, **dict(job.options))
        return (MISSED, missed) if missed else (OK, f"{line}, {time.perf_counter() - t0:.2f} s")
    except click.ClickException as e:
        return FAILED, e.format_message()
    except (OSError, ValueError, RuntimeError) as e:  # e.g. missing weights, unwritable folder, failed --verify
        return FAILED, f"{job.src}: {e}"
    except Exception as e:  # a bug: still reported on one line, the other files go on
        return FAILED, f"{job.src}: internal error: {type(e).__name__}: {e}"


# ------------------------------------------------------------------------------------------- the driver
def run_batch(command: str, inputs: tuple[str, ...], output: str, options: dict, jobs: int | None,
              progress: bool | None = None) -> None:
    """Code every input into the folder `output` with `jobs` workers (None: the cores); raise BadInput
    (exit 1) at the end if any file failed. progress (None: when stderr is a terminal): one bar counting the
    files; per-file lines instead, or as well with -v. Failures always get their line."""
    from tqdm import tqdm

    if jobs is not None and jobs < 1:
        raise click.BadParameter("must be >= 1", param_hint="-j/--jobs")
    todo, errors = plan(command, inputs, output, options)
    for line in errors:
        click.echo(f"vqcodec: error: {line}", err=True)
    failed = len(errors)
    missed = 0
    workers = max(1, min(jobs or default_jobs(), len(todo)))
    t0 = time.perf_counter()
    bar_on = show_progress(progress)
    lines = not bar_on or is_verbose()
    with tqdm(total=len(inputs), initial=len(errors), desc=command, unit="file", disable=not bar_on, leave=False,
              file=sys.stderr, dynamic_ncols=True) as bar:
        def report(status: str, line: str) -> None:
            nonlocal failed, missed
            failed += status == FAILED
            missed += status == MISSED
            if status != OK or lines:
                prefix = {OK: "", MISSED: "vqcodec: warning: ", FAILED: "vqcodec: error: "}[status]
                bar.write(prefix + line, file=sys.stderr)
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
    summary = (f"{command}d {len(inputs) - failed} of {plural(len(inputs), 'file')} into {output} in {elapsed:.2f} s "
               f"({plural(workers, 'worker')})")
    if failed:
        raise BadInput(f"{failed} of {plural(len(inputs), 'file')} failed; {summary}")
    click.echo(summary, err=True)
    if missed:
        click.echo(f"vqcodec: warning: {missed} of {plural(len(inputs), 'file')} missed the size target "
                   f"(exit status {EXIT_TARGET_MISSED})", err=True)
        click.get_current_context().exit(EXIT_TARGET_MISSED)
