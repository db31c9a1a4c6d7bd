"""Outputs of `rate_distortion.py`: per-codec JSON, BD-rate table, RD plot and the markdown summary.

A measured codec is a "record" in CompressAI's results format (results/image/kodak/*.json there):
    {"name": str, "description": str,
     "results": {"quality": [...], "bpp": [...], "psnr-rgb": [...], "ms-ssim": [...], "ms-ssim-db": [...],
                 "encoding_time": [...], "decoding_time": [...]}}
with one entry per quality level, each averaged over the images; bpp in bits per pixel, PSNR and
MS-SSIM-dB in dB, times in seconds per image. ("quality" is our addition: the codec's setting.)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from metrics import bd_rate, ms_ssim_db
from reference_curves import SOURCE_COMMIT, SOURCE_REPO, ReferenceCurve

__all__ = [
    "Curve",
    "ANCHOR_KEYS",
    "curve_from_record",
    "curve_from_reference",
    "bd_rate_entries",
    "bd_rate_document",
    "write_json",
    "plot_rd",
    "write_markdown",
]

Record = Mapping[str, Any]

# Codecs that serve as BD-rate anchors when they were measured.
ANCHOR_KEYS = ("jpeg", "webp", "avif")
BD_METRICS = (("psnr-rgb", "PSNR"), ("ms-ssim-db", "MS-SSIM dB"))
REPORTED_METHOD = "cubic"


@dataclass(frozen=True)
class Curve:
    """One RD curve for plotting and BD-rate. published=True: carried over, not measured here."""

    key: str
    label: str
    bpp: tuple[float, ...]
    psnr: tuple[float, ...]
    ms_ssim_db: tuple[float, ...]
    published: bool = False

    def quality(self, metric: str) -> tuple[float, ...]:
        return self.psnr if metric == "psnr-rgb" else self.ms_ssim_db


def curve_from_record(key: str, record: Record) -> Curve:
    r = record["results"]
    return Curve(key, record["name"], tuple(r["bpp"]), tuple(r["psnr-rgb"]), tuple(r["ms-ssim-db"]))


def curve_from_reference(ref: ReferenceCurve) -> Curve:
    return Curve(
        key=ref.name,
        label=f"{ref.name} (CompressAI published, not re-measured)",
        bpp=ref.bpp,
        psnr=ref.psnr,
        ms_ssim_db=tuple(ms_ssim_db(v) for v in ref.ms_ssim),
        published=True,
    )


def bd_rate_entries(curves: Sequence[Curve]) -> list[dict[str, Any]]:
    """BD-rate of every curve against every measured anchor (jpeg, webp, avif) other than itself.

    One entry per (test, anchor, metric): {"test", "anchor", "metric", "cubic", "pchip", "range", "note"};
    cubic/pchip are percentages or None (then "note" says why), range is the shared quality interval in dB.
    """
    anchors = [c for c in curves if c.key in ANCHOR_KEYS and not c.published]
    entries = []
    for test in curves:
        for anchor in anchors:
            if anchor.key == test.key:
                continue
            for metric, _ in BD_METRICS:
                qa, qt = anchor.quality(metric), test.quality(metric)
                entry: dict[str, Any] = {
                    "test": test.label,
                    "anchor": anchor.label,
                    "metric": metric,
                    "published_test": test.published,
                    "range": [max(min(qa), min(qt)), min(max(qa), max(qt))],
                }
                notes = []
                for method in ("cubic", "pchip"):
                    try:
                        entry[method] = bd_rate(anchor.bpp, qa, test.bpp, qt, method=method)
                    except ValueError as exc:
                        entry[method] = None
                        notes.append(f"{method}: {exc}")
                entry["note"] = "; ".join(notes)
                entries.append(entry)
    return entries


def bd_rate_document(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The content of bd_rate.json: the entries of `bd_rate_entries` with what they mean."""
    return {
        "reported_method": REPORTED_METHOD,
        "methods": {
            "cubic": "least-squares cubic polynomial of ln(bpp) against quality, integrated over the "
            "shared quality range (Bjontegaard, VCEG-M33)",
            "pchip": "piecewise cubic Hermite (Fritsch-Carlson) interpolation of ln(bpp) against quality",
        },
        "units": "percent bit-rate change of test against anchor at equal quality; negative = fewer bits",
        "entries": list(entries),
    }


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n")
    return path


def plot_rd(path: Path, curves: Sequence[Curve], title: str) -> Path:
    """PSNR and MS-SSIM (dB) against bpp, side by side; published curves dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    max_bpp = max(max(c.bpp) for c in curves)
    for ax, (metric, ylabel) in zip(axes, (("psnr-rgb", "PSNR RGB [dB]"), ("ms-ssim-db", "MS-SSIM [dB]"))):
        for c in curves:
            style = dict(linestyle="--", marker="x", alpha=0.8) if c.published else dict(linestyle="-", marker="o")
            ax.plot(c.bpp, c.quality(metric), label=c.label, markersize=4, **style)
        ax.set_xlabel("bit-rate [bpp]")
        ax.set_ylabel(ylabel)
        ax.set_xlim(0, min(max_bpp, 2.0) * 1.05)
        ax.grid(True, alpha=0.4)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.1f} %"


def _fmt_db(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.2f}"


def write_markdown(
    path: Path,
    header: Iterable[str],
    records: Mapping[str, Record],
    bd_entries: Sequence[Mapping[str, Any]],
    references: Sequence[ReferenceCurve],
) -> Path:
    """The human-readable summary: notes, BD-rate table, one table per codec, the published points."""
    lines = list(header)

    lines += ["", "## BD-rate", ""]
    if bd_entries:
        tests = list(dict.fromkeys(e["test"] for e in bd_entries))
        anchor_set = {e["anchor"] for e in bd_entries}
        anchors = [t for t in tests if t in anchor_set]  # in the order the codecs were measured
        published = {e["test"] for e in bd_entries if e["published_test"]}
        cell = {(e["test"], e["anchor"], e["metric"]): e for e in bd_entries}
        lines += [
            f"Bjøntegaard delta rate: {REPORTED_METHOD} polynomial fit of log(bpp) against quality (reported), "
            "piecewise-cubic (pchip) variant in brackets, integrated over the quality range both curves cover. "
            "Negative: fewer bits than the anchor for the same quality. Rows marked * are published curves "
            "(not re-measured) against our measured anchors.",
        ]
        for metric, metric_label in BD_METRICS:
            lines += [
                "",
                f"BD-rate ({metric_label}):",
                "",
                "| codec | " + " | ".join(f"vs {a}" for a in anchors) + " |",
                "|---" + "|---:" * len(anchors) + "|",
            ]
            for t in tests:
                row = []
                for a in anchors:
                    e = cell.get((t, a, metric))
                    row.append("" if e is None else f"{_pct(e['cubic'])} ({_pct(e['pchip'])})")
                lines.append(f"| {t}{'*' if t in published else ''} | " + " | ".join(row) + " |")
        notes = sorted({e["note"] for e in bd_entries if e["note"]})
        if notes:
            lines += ["", "n/a: " + " / ".join(notes)]
    else:
        lines.append("No anchor (JPEG, WebP or AVIF) was measured, so no BD-rate.")

    for record in records.values():
        r = record["results"]
        lines += [
            "",
            f"## {record['name']}",
            "",
            record["description"],
            "",
            "| quality | bpp | PSNR (dB) | MS-SSIM | MS-SSIM (dB) | encode (ms) | decode (ms) |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for i, q in enumerate(r["quality"]):
            lines.append(
                f"| {q} | {r['bpp'][i]:.3f} | {_fmt_db(r['psnr-rgb'][i])} | {r['ms-ssim'][i]:.4f} | "
                f"{_fmt_db(r['ms-ssim-db'][i])} | {1e3 * r['encoding_time'][i]:.1f} | {1e3 * r['decoding_time'][i]:.1f} |"
            )

    if references:
        lines += [
            "",
            "## Published reference curves (carried over from CompressAI, not re-measured)",
            "",
            f"From github.com/{SOURCE_REPO} at commit {SOURCE_COMMIT}; PSNR and MS-SSIM computed there on float "
            "reconstructions (no 8-bit rounding).",
        ]
        for ref in references:
            lines += ["", f"{ref.name}: `{ref.path}`", "", "| quality | bpp | PSNR (dB) | MS-SSIM |", "|---:|---:|---:|---:|"]
            for i, (b, p, m) in enumerate(zip(ref.bpp, ref.psnr, ref.ms_ssim), start=1):
                lines.append(f"| {i} | {b:.3f} | {p:.2f} | {m:.4f} |")

    path.write_text("\n".join(lines) + "\n")
    return path
