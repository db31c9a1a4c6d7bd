"""Fit a device run's folder to what the device tool brings back, and join it again here.

The tool returns at most 8 files of at most 16 MiB each, 64 MiB together, from $OUT. A full-size image model's
exported weights (float32) are about 17 MB and its checkpoint (model, Adam state, weight average) about 70 MB, so:

    python benchmarks/gpu/collect_run.py pack "$OUT/run" --keep-dir /tmp/vq_device_run

keeps the files in order of priority (train.log, log.jsonl, then *.safetensors, then checkpoint.pt, then the rest)
while the totals allow, splits a file over PART_MIB into NAME.part1, NAME.part2, ... (byte ranges), moves what does
not fit (and every folder) to --keep-dir on the device, removes links (the decoder run's codec_inputs), and writes
RETURNED.json: each returned file's parts and sha256, and what stayed behind. Here, on the files that came back:

    python benchmarks/gpu/collect_run.py join /work/.device/.../run --to runs/gpu_run

rebuilds every returned file in --to (the parts concatenated, sha256 checked).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

MIB = 1 << 20
PART_MIB = 15
MAX_FILES = 8
MAX_MIB = 63
MANIFEST = "RETURNED.json"
PRIORITY = ("train.log", "log.jsonl", "*.safetensors", "checkpoint.pt", "*")
"""Which files come back first (glob patterns of file names)."""


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def ranked(run: Path) -> list[Path]:
    """The plain files of `run` (not links), in order of PRIORITY, then by name."""
    files = sorted(p for p in run.iterdir() if p.is_file() and not p.is_symlink() and p.name != MANIFEST)
    order = []
    for pattern in PRIORITY:
        order += [p for p in files if p.match(pattern) and p not in order]
    return order


def split(path: Path, part_bytes: int) -> list[str]:
    """Cut `path` into NAME.part1.. of at most `part_bytes` bytes each (the original removed); their names."""
    names = []
    with path.open("rb") as f:
        for i, block in enumerate(iter(lambda: f.read(part_bytes), b""), start=1):
            part = path.with_name(f"{path.name}.part{i}")
            part.write_bytes(block)
            names.append(part.name)
    path.unlink()
    return names


def move_aside(path: Path, keep: Path) -> str:
    """Move `path` (file or folder) into `keep`; its new path. A link is removed (what it points to stays where it
    is, e.g. the decoder run's codec_inputs in `keep`); its target."""
    if path.is_symlink():
        target = path.readlink()
        path.unlink()
        return str(target)
    keep.mkdir(parents=True, exist_ok=True)
    target = keep / path.name
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    return str(shutil.move(str(path), str(target)))


def pack_run(run: Path, keep: Path, part_mib: float = PART_MIB, max_files: int = MAX_FILES,
             max_mib: float = MAX_MIB) -> dict:
    """Make `run` returnable (module docstring) and write its RETURNED.json; returns that record."""
    part_bytes, budget = int(part_mib * MIB), int(max_mib * MIB)
    returned, kept, files_used, bytes_used = {}, {}, 1, 0  # RETURNED.json is one file
    for path in ranked(run):
        size = path.stat().st_size
        parts = max(1, -(-size // part_bytes))
        if files_used + parts <= max_files and bytes_used + size <= budget:
            digest = sha256(path)
            names = split(path, part_bytes) if parts > 1 else [path.name]
            returned[path.name] = {"bytes": size, "sha256": digest, "parts": names}
            files_used, bytes_used = files_used + parts, bytes_used + size
        else:
            kept[path.name] = move_aside(path, keep)
    for path in sorted(run.iterdir()):  # folders and links (e.g. codec_inputs), files that did not fit
        if path.name != MANIFEST and path.name not in returned and not any(path.name in r["parts"]
                                                                            for r in returned.values()):
            kept[path.name] = move_aside(path, keep)
    record = {"returned": returned, "kept_on_device": kept}
    (run / MANIFEST).write_text(json.dumps(record, indent=1) + "\n")
    return record


def join_run(src: Path, dst: Path) -> list[Path]:
    """Rebuild the files RETURNED.json of `src` lists in `dst` (parts concatenated, sha256 checked); their paths.
    Raises ValueError naming a missing part or a file whose sum differs."""
    record = json.loads((src / MANIFEST).read_text())
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for name, entry in record["returned"].items():
        missing = [p for p in entry["parts"] if not (src / p).is_file()]
        if missing:
            raise ValueError(f"{src} lacks {missing} of {name} (the tool left it out?); run the device command again")
        target = dst / name
        with target.open("wb") as out:
            for part in entry["parts"]:
                out.write((src / part).read_bytes())
        if sha256(target) != entry["sha256"]:
            raise ValueError(f"{target}: sha256 differs from the device's; fetch the files again")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="on the device: make the run folder returnable")
    p.add_argument("run", type=Path)
    p.add_argument("--keep-dir", type=Path, required=True, help="where what does not come back goes (device-local)")
    j = sub.add_parser("join", help="here: rebuild the returned files")
    j.add_argument("run", type=Path)
    j.add_argument("--to", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            record = pack_run(args.run, args.keep_dir)
            for name, entry in record["returned"].items():
                print(f"returned: {name} ({entry['bytes'] / MIB:.2f} MiB in {len(entry['parts'])} part(s))")
            for name, where in record["kept_on_device"].items():
                print(f"kept on the device (too large to return, or a folder): {name} -> {where}")
        else:
            for path in join_run(args.run, args.to):
                print(f"wrote {path}")
    except (OSError, ValueError, KeyError) as e:
        print(f"collect_run: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
