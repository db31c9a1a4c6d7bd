"""Benchmark the CPU nearest-codebook search against torch.cdist + min and faiss IndexFlatL2.

    python benchmarks/nearest_code.py                 # full: N = 6144 and 2^20, K = 512, D = 64
    python benchmarks/nearest_code.py --quick         # smoke run, a few seconds
    python benchmarks/nearest_code.py --threads 1,2   # one timing table per thread count

Methods (each returns indices and squared distances for all N rows):
  torch_backend  vqcodec.kernels.nearest_code(x, codebook, backend="torch")
  cdist_min      torch.min(torch.cdist(x, codebook), dim=1)   (forms the N x K matrix)
  faiss_flatl2   faiss.IndexFlatL2(D); add(codebook); search(x, k=1)   (index build included)

Timing: every method is warmed up once, then run --repeats times in rotating order (so a
background load spike hits all methods alike); medians and minima are reported. Peak extra memory:
each method runs once in a fresh child process, which creates the inputs, makes a 1024-row
warm-up call, resets its peak-RSS mark (/proc/self/clear_refs) and reports VmHWM - VmRSS around
the one real call. It covers everything the call touches (torch, BLAS and faiss buffers alike), to
page granularity. (ru_maxrss is not used: a child inherits its parent's value on Linux.)
Results go to benchmarks/results/nearest_code.json (--quick: benchmarks/results/tmp/).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from vqcodec.kernels import nearest_code
from vqcodec.kernels.nearest_code_torch import score_columns, default_block_rows

try:
    import faiss
except ImportError:  # optional
    faiss = None

RESULTS = Path(__file__).resolve().parent / "results"
Method = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def run_torch_backend(x: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return nearest_code(x, codebook, backend="torch")


def run_cdist_min(x: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dist, idx = torch.min(torch.cdist(x, codebook), dim=1)
    return idx, dist.square_()


def run_faiss(x: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    index = faiss.IndexFlatL2(codebook.shape[1])
    index.add(codebook.numpy())
    dist, idx = index.search(x.numpy(), 1)
    return torch.from_numpy(idx[:, 0]), torch.from_numpy(dist[:, 0])


def methods() -> dict[str, Method]:
    out: dict[str, Method] = {"torch_backend": run_torch_backend, "cdist_min": run_cdist_min}
    if faiss is not None:
        out["faiss_flatl2"] = run_faiss
    return out


def make_inputs(n: int, k: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    if faiss is not None:
        faiss.omp_set_num_threads(threads)


def time_methods(x: torch.Tensor, codebook: torch.Tensor, repeats: int) -> tuple[dict, dict]:
    """Warm-up outputs and per-method timings (seconds), methods interleaved round by round."""
    fns = methods()
    outputs = {name: fn(x, codebook) for name, fn in fns.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[name](x, codebook)
            times[name].append(time.perf_counter() - t0)
    return outputs, times


def agreement(outputs: dict, x: torch.Tensor, codebook: torch.Tensor) -> dict:
    """Index agreement with torch_backend, and how much farther the other choice is (true dist)."""
    ref_idx, _ = outputs["torch_backend"]
    res = {}
    for name, (idx, _) in outputs.items():
        if name == "torch_backend":
            continue
        differ = (idx != ref_idx).nonzero().squeeze(1)
        worst = 0.0
        if len(differ):
            xs = x[differ].double()
            d_ref = (xs - codebook[ref_idx[differ]].double()).pow(2).sum(1)
            d_other = (xs - codebook[idx[differ]].double()).pow(2).sum(1)
            worst = float((d_ref - d_other).abs().max())
        res[name] = {"index_agreement": 1.0 - len(differ) / len(ref_idx),
                     "max_true_dist_gap_where_indices_differ": worst}
    return res


_CHILD = """
import json, sys, time
sys.path.insert(0, {bench_dir!r})
import nearest_code as bench
name, n, k, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
x, e = bench.make_inputs(n, k, d)
fn = bench.methods()[name]
fn(x[:1024].clone(), e)
reset = bench.reset_peak_rss()
before = bench.rss_kib()
t0 = time.perf_counter()
fn(x, e)
seconds = time.perf_counter() - t0
peak = bench.rss_kib("VmHWM")
print(json.dumps({{"peak_extra_bytes": (peak - before) * 1024, "cold_call_s": seconds,
                  "peak_reset": reset}}))
"""


def rss_kib(field: str = "VmRSS") -> int:
    """Current (VmRSS) or peak (VmHWM) resident set of this process in KiB, from /proc.

    Not ru_maxrss: on Linux a child inherits its parent's ru_maxrss across vfork/exec, so a
    child spawned by a large parent would report no growth at all.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure_memory(name: str, n: int, k: int, d: int) -> dict:
    """Peak RSS growth of one call of method `name`, in a fresh child process."""
    code = _CHILD.format(bench_dir=str(Path(__file__).resolve().parent))
    proc = subprocess.run([sys.executable, "-c", code, name, str(n), str(k), str(d)],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes, 3 repeats, few seconds")
    p.add_argument("--sizes", type=str, default=None, help="comma-separated N values")
    p.add_argument("--k", type=int, default=512)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--repeats", type=int, default=None, help="timed runs per method (default 5)")
    p.add_argument("--threads", type=str, default=str(torch.get_num_threads()),
                   help="comma-separated torch/faiss thread counts, one table each")
    p.add_argument("--no-memory", action="store_true", help="skip the child-process memory runs")
    p.add_argument("--out", type=Path, default=None, help="JSON path")
    args = p.parse_args(argv)

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [512, 2048] if args.quick else [6144, 1 << 20])
    repeats = args.repeats or (3 if args.quick else 5)
    thread_counts = [int(t) for t in args.threads.split(",")]
    measure_mem = not args.no_memory and not args.quick
    out_path = args.out or (RESULTS / "tmp" / "nearest_code_quick.json" if args.quick
                            else RESULTS / "nearest_code.json")
    k, d = args.k, args.d

    report: dict = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None
        else "main(" + repr(argv) + ")",
        "machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(),
                    "loadavg_start": os.getloadavg(), "torch": torch.__version__,
                    "faiss": getattr(faiss, "__version__", None),
                    "python": platform.python_version()},
        "k": k, "d": d, "repeats": repeats,
        "notes": [
            "Times in seconds; medians over interleaved repeats, min also given.",
            "peak_extra_mib: peak RSS (VmHWM, reset before the call) minus RSS before one call, "
            "in a fresh process after a 1024-row warm-up (includes library buffers).",
            "torch_block_mib: the torch backend's score buffer, block_rows x K_pad x 4 bytes.",
            "The machine is shared with a training job: timings are noisy.",
        ],
        "results": [],
    }
    print(f"nearest-code search, K={k}, D={d}, repeats={repeats}, cpu={report['machine']['cpu']}, "
          f"load={report['machine']['loadavg_start']}")
    if faiss is None:
        print("faiss is not importable: faiss_flatl2 skipped")

    for n in sizes:
        x, codebook = make_inputs(n, k, d)
        rows = min(n, default_block_rows(k))
        entry: dict = {
            "n": n,
            "torch_block_rows": rows,
            "torch_block_mib": rows * score_columns(k) * 4 / 2**20,
            "full_matrix_mib": n * k * 4 / 2**20,
            "timings": {},
        }
        for threads in thread_counts:
            set_threads(threads)
            outputs, times = time_methods(x, codebook, repeats)
            table = {name: {"median_s": statistics.median(ts), "min_s": min(ts), "times_s": ts}
                     for name, ts in times.items()}
            t_ref = table["torch_backend"]["median_s"]
            ratios = {f"{name}_over_torch_backend": row["median_s"] / t_ref
                      for name, row in table.items() if name != "torch_backend"}
            entry["timings"][str(threads)] = {"methods": table, "median_ratios": ratios,
                                              "agreement": agreement(outputs, x, codebook)}
            print(f"\nN={n}  threads={threads}  (torch block {rows} rows = "
                  f"{entry['torch_block_mib']:.1f} MiB; full N x K = {entry['full_matrix_mib']:.0f} MiB)")
            for name, row in table.items():
                ratio = row["median_s"] / t_ref
                print(f"  {name:14s} median {row['median_s'] * 1e3:9.1f} ms   min "
                      f"{row['min_s'] * 1e3:9.1f} ms   median / torch_backend {ratio:5.2f}")
            for name, agr in entry["timings"][str(threads)]["agreement"].items():
                print(f"  indices equal to torch_backend: {name} {agr['index_agreement']:.6f}")
        if measure_mem:
            entry["memory"] = {}
            for name in methods():
                mem = measure_memory(name, n, k, d)
                entry["memory"][name] = mem
                if "error" in mem:
                    print(f"  memory {name}: child failed: {mem['error'][-300:]}")
                else:
                    mem["peak_extra_mib"] = mem["peak_extra_bytes"] / 2**20
                    print(f"  peak extra memory {name:14s} {mem['peak_extra_mib']:9.1f} MiB "
                          f"(cold call {mem['cold_call_s']:.2f} s)")
        report["results"].append(entry)
        del x, codebook

    report["machine"]["loadavg_end"] = os.getloadavg()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out_path}  (load average at end {report['machine']['loadavg_end']})")
    return report


if __name__ == "__main__":
    main()
