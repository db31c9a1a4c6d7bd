"""Audio codec speed, memory and exactness: in-process speed as multiples of real time, peak RSS of the CLI
on a 10-minute and a 60-minute file, and indices/samples across thread counts.

    python benchmarks/audio_speed.py                 # 10 s clip in process; CLI RSS at 10 and 60 minutes
    python benchmarks/audio_speed.py --quick         # 3 s clip; CLI RSS at 10 s and 60 s (CI smoke run)
    python benchmarks/audio_speed.py --hour-speed    # also time a 60-minute file in process

The long files are the bundled evaluation clips (data/speech/) concatenated and repeated to length,
written as 16 kHz FLAC into a temporary folder. Each RSS figure is the peak resident memory of a fresh
`vqcodec encode` or `vqcodec decode` process (resource.getrusage of the child), the median of --repeats
processes (default 3: one process's peak varies by about +-8 MiB from run to run, with the allocator's
timing), so 60 minutes against 10 minutes shows whether memory grows with the file (issue 11: within
5 %). `--stdout` also measures
`vqcodec decode X.vq -o -` (a WAV streamed to stdout, discarded). Writes audio_speed.json and audio_speed.md
to --out (default benchmarks/results/audio/). Timings share the machine's 2 cores with whatever else runs:
the 1-minute load average before and after the run is recorded beside them (above 2, timings are noisy).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

HERE = Path(__file__).resolve().parent
SPEECH = HERE.parent / "data" / "speech"
RATE = 16000


def speech_of_length(seconds: float) -> np.ndarray:
    """float32 (T,) 16 kHz speech: the bundled evaluation clips, resampled, concatenated, repeated to length."""
    import soxr

    clips = []
    for p in sorted(SPEECH.rglob("*")):
        if p.suffix.lower() in (".flac", ".wav"):
            x, r = sf.read(p, dtype="float32", always_2d=True)
            clips.append(soxr.resample(x[:, 0], r, RATE) if r != RATE else x[:, 0])
    if not clips:
        raise SystemExit(f"no evaluation clips under {SPEECH}; the benchmark needs the bundled data/speech/")
    joined = np.concatenate(clips)
    reps = int(np.ceil(seconds * RATE / len(joined)))
    return np.tile(joined, reps)[: int(seconds * RATE)]


def write_long(folder: Path, seconds: float) -> Path:
    """A 16 kHz mono FLAC of `seconds`, written in blocks (never the whole signal at once for long files)."""
    path = folder / f"speech_{int(seconds)}s.flac"
    base = speech_of_length(min(seconds, 600.0))
    with sf.SoundFile(path, "w", samplerate=RATE, channels=1, format="FLAC", subtype="PCM_16") as f:
        left = int(seconds * RATE)
        while left > 0:
            n = min(left, len(base))
            f.write(base[:n])
            left -= n
    return path


def cli_peak_rss(args: list[str], threads: int, discard_stdout: bool = False) -> tuple[float, float]:
    """Run `vqcodec ARGS` in a fresh process -> (wall seconds, peak RSS in MiB). discard_stdout: send the
    child's stdout to /dev/null (for `-o -`)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    sink = ", stdout=subprocess.DEVNULL" if discard_stdout else ""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            f"r = subprocess.run([sys.executable, '-m', 'vqcodec.cli.main', *sys.argv[1:]]{sink}); "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
            "sys.exit(r.returncode)")
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"vqcodec {' '.join(args)} failed: {out.stderr.strip()[-400:]}")
    wall, rss_kib = out.stdout.split()
    return float(wall), int(rss_kib) / 1024


def in_process(x: np.ndarray, threads: int, decoder: str | None = None) -> dict:
    """Encode and decode `x` in process (model loaded, one warm-up) -> times and real-time factors.
    decoder: what to decode with (`vqcodec.decode(decoder=)`: an installed decoder's id, "model", a weights
    file; its loading is inside the decode time); None: the decoder the files name."""
    import vqcodec
    from vqcodec.api import decode_audio_blocks

    torch.set_num_threads(threads)
    vqcodec.decode(vqcodec.encode_audio(x[:RATE], RATE), decoder=decoder)  # warm-up: model load, allocations
    t0 = time.perf_counter()
    data = vqcodec.encode_audio(x, RATE)
    t1 = time.perf_counter()
    _, _, n, blocks = decode_audio_blocks(data, decoder=decoder)
    got = sum(len(b) for b in blocks)
    t2 = time.perf_counter()
    dur = len(x) / RATE
    assert got == n == len(x)
    return {"seconds": dur, "bytes": len(data), "kbps": 8 * len(data) / dur / 1000, "encode_s": t1 - t0,
            "decode_s": t2 - t1, "encode_x_realtime": dur / (t1 - t0), "decode_x_realtime": dur / (t2 - t1)}


def thread_exactness(x: np.ndarray, decoder: str | None = None) -> dict:
    """Indices and samples with 1 and 2 torch threads: indices must be equal, samples within 1 LSB."""
    import vqcodec

    before = torch.get_num_threads()
    out = {}
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            data = vqcodec.encode_audio(x, RATE)
            out[n] = (data, vqcodec.decode_indices(data), vqcodec.decode(data, decoder=decoder)[0])
    finally:
        torch.set_num_threads(before)
    return {"bytes_equal": out[1][0] == out[2][0], "indices_equal": bool(torch.equal(out[1][1], out[2][1])),
            "max_sample_diff_lsb16": float(np.abs(out[1][2] - out[2][2]).max() * 32768)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "audio")
    ap.add_argument("--quick", action="store_true", help="short files only (CI smoke run)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (this machine has 2 cores)")
    ap.add_argument("--hour-speed", action="store_true", help="also time a 60-minute file in process")
    ap.add_argument("--stdout", action="store_true", help="also measure decoding to stdout (`-o -`)")
    ap.add_argument("--decoder", default=None,
                    help="decode with this decoder: an installed decoder's id, 'model' (the speech model's own, as "
                         "0.5.x decoded) or a weights file of `vqcodec train audio-decoder`; default: the one the "
                         "files name")
    ap.add_argument("--machine", default="2-core CPU, shared with a training run and other work",
                    help="how the machine was shared while it ran (kept in the outputs)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="fresh CLI processes per measurement; figures are medians (default 3, --quick 1): "
                         "one process's peak RSS varies by about +-8 MiB from run to run")
    args = ap.parse_args(argv)
    try:
        import vqcodec

        top = vqcodec.max_quality("audio")
    except (FileNotFoundError, ValueError) as e:
        print(f"audio_speed: no audio model installed ({e})", file=sys.stderr)
        return 1
    short, long_a, long_b = (3.0, 10.0, 60.0) if args.quick else (10.0, 600.0, 3600.0)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    result: dict = {"command": " ".join(["python", "benchmarks/audio_speed.py", *(argv or sys.argv[1:])]),
                    "threads": args.threads, "quality": top,
                    "machine": args.machine,
                    "date": time.strftime("%Y-%m-%d"), "load_average_1min": {"start": os.getloadavg()[0]}}
    x = speech_of_length(short)
    result["decoder"] = str(args.decoder) if args.decoder else None
    result["clip"] = in_process(x, args.threads, args.decoder)
    result["threads_exactness"] = thread_exactness(x[: 3 * RATE], args.decoder)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rss = {}
        for seconds in (long_a, long_b):
            src = write_long(tmp, seconds)
            vq, wav = tmp / f"{src.stem}.vq", tmp / f"{src.stem}.wav"
            runs: dict[str, list[tuple[float, float]]] = {"encode": [], "decode": [], "decode_stdout": []}
            for _ in range(args.repeats):  # interleaved, so a change of the machine's load hits every kind
                runs["encode"].append(cli_peak_rss(["encode", str(src), "-o", str(vq), "-f"], args.threads))
                with_decoder = ["--decoder", str(args.decoder)] if args.decoder else []
                runs["decode"].append(cli_peak_rss(["decode", str(vq), "-o", str(wav), "-f", *with_decoder],
                                                   args.threads))
                assert sf.info(wav).frames == sf.info(src).frames
                if args.stdout:
                    runs["decode_stdout"].append(cli_peak_rss(["decode", str(vq), "-o", "-", *with_decoder], args.threads,
                                                              discard_stdout=True))
            r: dict = {"vq_bytes": vq.stat().st_size, "repeats": args.repeats}
            for kind, got in runs.items():
                if got:
                    walls, peaks = [w for w, _ in got], [m for _, m in got]
                    r.update({f"{kind}_s": float(np.median(walls)), f"{kind}_peak_rss_mib": float(np.median(peaks)),
                              f"{kind}_peak_rss_mib_runs": peaks, f"{kind}_x_realtime": seconds / np.median(walls)})
            rss[f"{int(seconds)}s"] = r
            for f in (src, vq, wav):
                f.unlink()
        result["cli"] = rss
        a, b = rss[f"{int(long_a)}s"], rss[f"{int(long_b)}s"]
        result["rss_growth"] = {k: b[k] / a[k] - 1 for k in ("encode_peak_rss_mib", "decode_peak_rss_mib",
                                                             "decode_stdout_peak_rss_mib") if k in a}
        if args.hour_speed:
            result["hour"] = in_process(speech_of_length(3600.0), args.threads)
    result["load_average_1min"]["end"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "audio_speed.json").write_text(json.dumps(result, indent=2))
    c = result["clip"]
    lines = [f"Audio codec speed and memory ({result['machine']}, {args.threads} torch threads, quality {top}; "
             f"command: `{result['command']}`).", "",
             f"- {c['seconds']:.0f} s clip in process: encode {c['encode_x_realtime']:.1f}x real time, "
             f"decode {c['decode_x_realtime']:.1f}x real time, {c['kbps']:.2f} kbit/s",
             f"- 1 vs 2 threads: indices equal {result['threads_exactness']['indices_equal']}, max sample difference "
             f"{result['threads_exactness']['max_sample_diff_lsb16']:.2f} LSB (16-bit)",
             f"- 1-minute load average: {result['load_average_1min']['start']:.1f} at the start, "
             f"{result['load_average_1min']['end']:.1f} at the end (2 cores; above 2 the timings are noisy)", "",
             f"CLI figures: the median of {args.repeats} fresh process(es) each (every run's peak RSS in brackets).",
             "", "| file | encode s | decode s | encode peak RSS MiB | decode peak RSS MiB |"
             + (" decode to stdout peak RSS MiB |" if args.stdout else ""),
             "|---|---|---|---|---|" + ("---|" if args.stdout else "")]

    def peak(r: dict, kind: str) -> str:
        runs = r[f"{kind}_peak_rss_mib_runs"]
        return f"{r[f'{kind}_peak_rss_mib']:.0f}" + (f" ({', '.join(f'{m:.0f}' for m in runs)})" if len(runs) > 1 else "")

    for name, r in result["cli"].items():
        lines.append(f"| {name} | {r['encode_s']:.1f} | {r['decode_s']:.1f} | {peak(r, 'encode')} | "
                     f"{peak(r, 'decode')} |" + (f" {peak(r, 'decode_stdout')} |" if args.stdout else ""))
    g = result["rss_growth"]
    lines += ["", f"Peak RSS growth from {int(long_a)} s to {int(long_b)} s: encode {100 * g['encode_peak_rss_mib']:+.1f} %, "
              f"decode {100 * g['decode_peak_rss_mib']:+.1f} %"
              + (f", decode to stdout {100 * g['decode_stdout_peak_rss_mib']:+.1f} %"
                 if "decode_stdout_peak_rss_mib" in g else "") + " (medians)."]
    if "hour" in result:
        h = result["hour"]
        lines.append(f"- 60-minute file in process: encode {h['encode_x_realtime']:.1f}x, decode {h['decode_x_realtime']:.1f}x real time")
    (args.out / "audio_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
