"""Fuzz vqcodec.decode: every input must end in a correct decode or vqcodec.VQFormatError (issue 13).

    python benchmarks/fuzz_decoder.py                 # 100,000 cases (about 10 minutes on one free core)
    python benchmarks/fuzz_decoder.py --quick         # a smoke run of 1,000 cases
    python benchmarks/fuzz_decoder.py --cases 20000 --seed 3 --weights DIR
    python benchmarks/fuzz_decoder.py --quick --partial   # decode(data, partial=True): cut files decode

Cases are mutations of small valid image and audio .vq files made with a tiny model (the test suite's
tiny weights, built here in a temporary folder, or the installed components in --weights DIR):
truncations (at any length), bit flips, insertions, deletions, overwrites, random bytes, crafted headers
with huge sizes / layer counts / stream lengths (built with write_file, valid CRC), valid headers over
garbage payloads, spliced and swapped streams, unknown chunks, wrong model ids / hashes / roles / format
versions / modalities. Half of the byte-level mutations recompute the CRC, so the damage reaches the
chunk parser and the range decoder instead of stopping at the checksum.

Outcomes: "decoded" (a decode of the declared size: an image of the declared width x height, audio of
the declared samples x channels), "VQFormatError: <class>" (classed by message), "other exception"
(a bug: the case is saved in the JSON), and "slow" (any case over 1 s, counted beside its outcome).
Writes benchmarks/results/fuzz_decoder.json (or --out DIR). Exit status 1 if any case raised another
exception or decoded to the wrong size.

`tests/test_fuzz_decoder.py` imports the case makers from this file (`MUTATIONS`, `make_case`,
`run_case`, `base_files`) and runs a few thousand of them under hypothesis.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from vqcodec.testing import use_weights_folder, write_tiny_weights

ROOT = Path(__file__).resolve().parents[1]
SLOW_SECONDS = 1.0

# ------------------------------------------------------------------------------------------- base files


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    from vqcodec.testing import smooth_image

    return smooth_image(h, w, seed)


def _speech(n: int, rate: int, channels: int, seed: int) -> np.ndarray:
    from vqcodec.testing import speechlike

    return speechlike((n + 1) / rate, rate, channels, seed)[:n]


def base_files(modalities: tuple[str, ...] = ("image", "audio")) -> list[bytes]:
    """Small valid files of the installed (VQCODEC_WEIGHTS_DIR) models: images of a few sizes and layer
    counts, a version-1 image, mono and stereo audio at 16 and 44.1 kHz."""
    import vqcodec
    from vqcodec import api, registry
    from vqcodec.bitstream import Modality, read_file
    from vqcodec.bitstream.v1 import VQHeader, pack
    from vqcodec.coding.stages import encode_stages
    from vqcodec.image.model import pad_to_multiple

    out: list[bytes] = []
    if "image" in modalities:
        top = vqcodec.max_quality("image")
        for (h, w), q, seed in [((16, 24), top, 0), ((8, 8), 1, 1), ((33, 17), max(1, top // 2), 2)]:
            out.append(vqcodec.encode_image(_smooth(h, w, seed), quality=q))
        # a version-1 file (0.1.0: every stage at every position, plain streams)
        codec = registry.default_codec("image")
        x = pad_to_multiple(codec._to_tensor(_smooth(16, 24, 0)), codec.model.factor)
        streams = encode_stages(codec.prior, codec.model.encode_indices(x, codec.max_layers, beam=4)[0])
        out.append(pack(VQHeader(Modality.IMAGE, codec.model_id, codec.v1_weights_hash, 24, 16), streams))
    if "audio" in modalities:
        top = vqcodec.max_quality("audio")
        for n, rate, ch, q in [(3200, 16000, 1, top), (2205, 44100, 2, 1), (800, 8000, 1, min(2, top))]:
            out.append(vqcodec.encode_audio(_speech(n, rate, ch, n), rate, quality=q))
    return out


# ------------------------------------------------------------------------------------------- mutations


def fix_crc(data: bytes) -> bytes:
    """Recompute the trailing CRC-32 of `data` (so the damage gets past the checksum)."""
    if len(data) < 4:
        return data
    return data[:-4] + zlib.crc32(data[:-4]).to_bytes(4, "little")


def _maybe_crc(data: bytes, rnd: random.Random) -> bytes:
    return fix_crc(data) if rnd.random() < 0.5 else data


def _rand_bytes(rnd: random.Random, n: int) -> bytes:
    return rnd.getrandbits(8 * n).to_bytes(n, "little") if n else b""


def m_truncate(base: bytes, rnd: random.Random) -> bytes:
    return _maybe_crc(base[: rnd.randrange(len(base) + 1)], rnd)


def m_bitflip(base: bytes, rnd: random.Random) -> bytes:
    b = bytearray(base)
    for _ in range(rnd.choice((1, 1, 1, 2, 4))):
        b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
    return _maybe_crc(bytes(b), rnd)


def m_insert(base: bytes, rnd: random.Random) -> bytes:
    i = rnd.randrange(len(base) + 1)
    return _maybe_crc(base[:i] + _rand_bytes(rnd, rnd.choice((1, 2, 4, 8, 16, 64))) + base[i:], rnd)


def m_delete(base: bytes, rnd: random.Random) -> bytes:
    i = rnd.randrange(len(base))
    return _maybe_crc(base[:i] + base[i + rnd.choice((1, 2, 4, 8, 32)):], rnd)


def m_overwrite(base: bytes, rnd: random.Random) -> bytes:
    i = rnd.randrange(len(base))
    n = rnd.choice((1, 2, 4, 8, 32))
    return _maybe_crc(base[:i] + _rand_bytes(rnd, n) + base[i + n:], rnd)


def m_random(base: bytes, rnd: random.Random) -> bytes:
    n = rnd.choice((0, 1, 4, 11, 42, 100, 300))
    head = b"\x89VQC" + bytes([rnd.choice((1, 2)), rnd.choice((0, 1))]) if rnd.random() < 0.7 else b""
    return _maybe_crc(head + _rand_bytes(rnd, n), rnd)


def _parts(base: bytes):
    from vqcodec.bitstream import read_file

    f = read_file(base)
    streams = [list(f.streams(k)) for k in range(1, f.layers + 1)]
    return f, streams


def _stream(rnd: random.Random, max_words: int = 16) -> bytes:
    return _rand_bytes(rnd, 4 * rnd.randrange(max_words + 1))


def _write(f, geometry, streams, extra=(), components=None) -> bytes:
    """write_file; for a file it refuses to write (its rules broken on purpose), the same chunks framed
    with a valid CRC by the container's own serializer, so the reader has to refuse them."""
    from vqcodec.bitstream import Modality, write_file
    from vqcodec.bitstream.container import FORMAT_VERSION, _chunks_for, _serialize

    modality = Modality.IMAGE if f.modality_name == "image" else Modality.AUDIO
    comps = components or f.components
    try:
        return write_file(modality, comps, geometry, streams, list(extra))
    except ValueError:
        return _serialize(FORMAT_VERSION, int(modality), _chunks_for(modality, comps, geometry, streams,
                                                                     list(extra), ""))


def m_huge_header(base: bytes, rnd: random.Random) -> bytes:
    """A valid file (CRC and all) declaring a huge size, many layers, short or garbage streams."""
    from vqcodec.bitstream import AudioGeometry, ImageGeometry, segment_table_chunk

    f, _ = _parts(base)
    layers = rnd.choice((1, 2, 3, 4, 8, 32, 255))
    if f.modality_name == "image":
        side = lambda: rnd.choice((1, 7, 8, 9, 100, 4000, 8000, 8192, 20000, 65535))  # noqa: E731
        g = ImageGeometry(side(), side())
        streams = [[_stream(rnd)] for _ in range(layers)]
        return _write(f, g, streams)
    ch = rnd.choice((1, 2, 3, 255))
    g = AudioGeometry(rnd.choice((1, 8000, 16000, 44100, 768000)), ch,
                      rnd.choice((1, 320, 16000, 16000 * 3600, 1 << 32, 1 << 40)))
    blocks = rnd.choice((1, 1, 2, 7))
    extra = [] if blocks == 1 else [segment_table_chunk([rnd.choice((1, 50, 1500, 1 << 31))] * blocks)]
    streams = [[_stream(rnd, 4) for _ in range(ch * blocks)] for _ in range(min(layers, 8))]
    return _write(f, g, streams, extra)


def m_garbage_payload(base: bytes, rnd: random.Random) -> bytes:
    """The base file's header and stream layout over random stream bytes (same or other lengths)."""
    f, streams = _parts(base)
    new = [[_rand_bytes(rnd, len(s) if rnd.random() < 0.5 else 4 * rnd.randrange(1 + len(s) // 2))
            for s in layer] for layer in streams]
    return _write(f, f.geometry, new, _extra_chunks(f))


def _extra_chunks(f) -> list:
    from vqcodec.bitstream import ChunkType

    return [c for c in f.chunks if c.type in (ChunkType.SEGMENT_TABLE, ChunkType.METADATA)]


def m_splice(base: bytes, rnd: random.Random) -> bytes:
    """Streams swapped between layers, duplicated, dropped or cut by a word; or a damaged segment table."""
    from vqcodec.bitstream import segment_table_chunk

    f, streams = _parts(base)
    op = rnd.randrange(5)
    if op == 0 and len(streams) > 1:
        i, j = rnd.sample(range(len(streams)), 2)
        streams[i], streams[j] = streams[j], streams[i]
    elif op == 1:
        streams.append(list(streams[-1]))
    elif op == 2:
        layer = rnd.choice(streams)
        k = rnd.randrange(len(layer))
        layer[k] = layer[k][:-4] if rnd.random() < 0.5 else layer[k] + _rand_bytes(rnd, 4)
    elif op == 3:
        layer = rnd.choice(streams)
        layer.insert(rnd.randrange(len(layer) + 1), _stream(rnd))
    extra = _extra_chunks(f)
    if op == 4 and f.modality_name == "audio":
        table = list(f.segment_frames) or [1]
        table[rnd.randrange(len(table))] += rnd.choice((-1, 1, 1000))
        extra = [segment_table_chunk([max(1, t) for t in table])]
    return _write(f, f.geometry, streams, extra)


def m_chunks(base: bytes, rnd: random.Random) -> bytes:
    """Unknown chunk types (optional or must-understand), metadata, at layer 0 or a quality layer."""
    from vqcodec.bitstream import Chunk

    f, streams = _parts(base)
    layer = rnd.choice((0, 0, 1, len(streams)))
    t = rnd.choice((0x0006, 0x0008, 0x0100, 0x7FFF, 0x8000, 0xFFFF))
    payload = bytes([rnd.randrange(1, 65)]) + b"k" * 64 + _rand_bytes(rnd, 8) if t == 6 else _stream(rnd)
    try:
        c = Chunk(t, layer, rnd.random() < 0.5, payload)
        return _write(f, f.geometry, streams, _extra_chunks(f) + [c])
    except (ValueError, TypeError):  # write_file refuses it: the case becomes the base with a bit flip
        return m_bitflip(base, rnd)


def m_wrong_model(base: bytes, rnd: random.Random) -> bytes:
    """Wrong model id / hash / role, a missing or extra component; or a wrong version or modality byte."""
    from vqcodec.bitstream import ModelComponent

    f, streams = _parts(base)
    op = rnd.randrange(6)
    if op >= 4:  # header bytes, CRC fixed
        b = bytearray(base)
        b[4 if op == 4 else 5] = rnd.choice((0, 1, 2, 3, 7, 255))
        return fix_crc(bytes(b))
    comps = list(f.components)
    k = rnd.randrange(len(comps))
    c = comps[k]
    if op == 0:
        comps[k] = ModelComponent(c.role, c.model_id + "-x", c.weights_hash)
    elif op == 1:
        h = bytearray(c.weights_hash)
        h[rnd.randrange(len(h))] ^= 1
        comps[k] = ModelComponent(c.role, c.model_id, bytes(h))
    elif op == 2:
        comps.pop(k)
        if not comps:
            comps = [ModelComponent("other", "x", bytes(16))]
    else:
        comps.append(ModelComponent("extra", "tiny-extra", bytes(16)))
    if f.version == 1:
        return fix_crc(base[:-4] + b"\0" * 4) if op == 1 else m_bitflip(base, rnd)
    return _write(f, f.geometry, streams, _extra_chunks(f), components=comps)


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncate": m_truncate, "bitflip": m_bitflip, "insert": m_insert, "delete": m_delete,
    "overwrite": m_overwrite, "random": m_random, "huge_header": m_huge_header,
    "garbage_payload": m_garbage_payload, "splice": m_splice, "chunks": m_chunks, "wrong_model": m_wrong_model,
}


def make_case(kind: str, base: bytes, seed: int) -> bytes:
    """The case `kind` made from `base` with random choices seeded by `seed` (deterministic)."""
    return MUTATIONS[kind](base, random.Random(seed))


# ------------------------------------------------------------------------------------------- running

_CLASSES = [  # (pattern in the message, class), first match wins
    ("bad magic", "not a .vq file"), ("not a .vq file", "not a .vq file"),
    ("upgrade vqcodec", "newer format / unknown must-understand"), ("format version", "format version"),
    ("unknown modality", "format version"), ("crc mismatch", "CRC mismatch"),
    ("decode limit", "over the decode limit (MAX_DECODE_*)"),
    ("too short to hold", "stream too short for the declared size"), ("ran dry", "stream ran dry while decoding"),
    ("range-coded stream", "stream does not match its indices"), ("range decoding failed", "range decoder error"),
    ("range decoder", "range decoder error"),
    ("which this codec does not have", "model not installed / wrong model"), ("file needs the", "model not "
     "installed / wrong model"), ("file names no", "model not installed / wrong model"),
    ("not installed", "model not installed / wrong model"),
    ("truncat", "truncated / framing"), ("varint", "truncated / framing"), ("bytes but", "truncated / framing"),
    ("unexpected bytes", "truncated / framing"), ("trailing", "truncated / framing"),
    ("declares", "truncated / framing"), ("chunk count", "truncated / framing"),
    ("segment table", "layers / streams / segments"), ("quality layer", "layers / streams / segments"),
    ("stream", "layers / streams / segments"), ("needs exactly", "layers / streams / segments"),
    ("layer", "layers / streams / segments"), ("size", "geometry field invalid"),
    ("sample rate", "geometry field invalid"), ("channel", "geometry field invalid"),
    ("chunk", "chunk field invalid"), ("model id", "chunk field invalid"), ("stage count", "chunk field invalid"),
]


def classify(message: str) -> str:
    low = message.lower()
    for pattern, name in _CLASSES:
        if pattern in low:
            return name
    return "other: " + " ".join(re.sub(r"[0-9]+", "N", message).split()[:5])


def run_case(data: bytes, partial: bool = False) -> tuple[str, str]:
    """Decode `data` -> (outcome, detail): outcome "decoded", "VQFormatError" or "other exception"
    (which includes a decode of the wrong size); detail: the message class or the exception.
    partial: decode with vqcodec.decode(data, partial=True) (a cut file gives its complete layers)."""
    import vqcodec
    from vqcodec.bitstream import complete_layers_prefix, read_file

    try:
        out = vqcodec.decode(data, partial=True) if partial else vqcodec.decode(data)
    except vqcodec.VQFormatError as e:
        return "VQFormatError", classify(str(e))
    except Exception as e:  # noqa: BLE001 - what the fuzzer looks for
        return "other exception", f"{type(e).__name__}: {e}"[:300]
    g = read_file(complete_layers_prefix(data).data if partial else data).geometry
    if isinstance(out, tuple):
        samples, rate = out
        ok = samples.shape == (g.num_samples, g.channels) and rate == g.sample_rate and samples.dtype == np.float32
    else:
        ok = out.size == (g.width, g.height) and out.mode == g.channel_layout.pil_mode
    return ("decoded", "") if ok else ("other exception", "decoded to the wrong size")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="1,000 cases (a smoke run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", type=Path, default=None,
                    help="a weights folder with image and/or audio models (default: the tiny test models)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--partial", action="store_true",
                    help="decode with partial=True (cut files give their complete layers); writes fuzz_decoder_partial.json")
    args = ap.parse_args(argv)
    cases = 1000 if args.quick else args.cases
    import torch

    torch.set_num_threads(1)
    tmp = None
    if args.weights is None:
        tmp = Path(tempfile.mkdtemp(prefix="vq_fuzz_"))
        weights = write_tiny_weights(tmp / "weights")
    else:
        weights = args.weights
    try:
        use_weights_folder(weights)
        modalities = tuple(m for m in ("image", "audio") if (weights / f"{m}_prior.safetensors").exists()) \
            or ("image", "audio")
        bases = base_files(modalities)
        rnd = random.Random(args.seed)
        kinds = list(MUTATIONS)
        table: Counter = Counter()
        by_kind: dict[str, Counter] = {k: Counter() for k in kinds}
        failures, slow_cases = [], []
        times: list[float] = []
        start = time.perf_counter()
        for i in range(cases):
            kind, b, seed = kinds[i % len(kinds)], rnd.randrange(len(bases)), rnd.getrandbits(32)
            data = make_case(kind, bases[b], seed)
            t0 = time.perf_counter()
            outcome, detail = run_case(data, args.partial)
            dt = time.perf_counter() - t0
            times.append(dt)
            key = outcome if outcome == "decoded" else f"{outcome}: {detail}" if outcome == "VQFormatError" else outcome
            table[key] += 1
            by_kind[kind][outcome] += 1
            case = {"kind": kind, "base": b, "seed": seed, "seconds": round(dt, 3), "bytes": len(data)}
            if outcome == "other exception" and len(failures) < 50:
                failures.append({**case, "error": detail, "data_b64": base64.b64encode(data).decode()})
            if dt > SLOW_SECONDS:
                table["slow (> 1 s)"] += 1
                if len(slow_cases) < 50:
                    slow_cases.append({**case, "outcome": f"{outcome}: {detail}"})
            if (i + 1) % 5000 == 0:
                print(f"  {i + 1} cases, {time.perf_counter() - start:.0f} s", file=sys.stderr)
        wall = time.perf_counter() - start
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    t = np.array(times)
    print(f"{cases} cases in {wall:.1f} s ({1000 * wall / cases:.1f} ms/case; median {1000 * np.median(t):.2f} ms, "
          f"p99 {1000 * np.quantile(t, 0.99):.0f} ms, max {1000 * t.max():.0f} ms); {len(bases)} base files")
    print(f"{'outcome':<70} {'cases':>8}")
    for key, n in sorted(table.items(), key=lambda kv: (kv[0].startswith("slow"), -kv[1])):
        print(f"{key:<70} {n:>8}")
    print("\nper mutation kind:", ", ".join(f"{k} {dict(v)}" for k, v in by_kind.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "command": "python benchmarks/fuzz_decoder.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cases": cases, "seed": args.seed, "partial": args.partial, "seconds": round(wall, 1), "ms_per_case": round(1000 * wall / cases, 2),
        "max_case_seconds": round(float(t.max()), 3), "base_files": len(bases),
        "weights": "tiny test models" if args.weights is None else str(args.weights),
        "outcomes": dict(table), "by_kind": {k: dict(v) for k, v in by_kind.items()},
        "other_exceptions": failures, "slow_cases": slow_cases,
    }
    name = "fuzz_decoder_partial.json" if args.partial else "fuzz_decoder.json"
    (args.out / name).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out / name}")
    return 1 if failures or table["other exception"] else 0


if __name__ == "__main__":
    sys.exit(main())
