"""Outputs of `rate_distortion.py`: per-codec JSON, BD-rate table, RD plot and the markdown summary.

A measured codec is a "record" in CompressAI's results format (results/image/kodak/*.json there):
    {"name": str, "description": str,
     "results": {"quality": [...], "bpp": [...], "psnr-rgb": [...], "ms-ssim": [...], "ms-ssim-db": [...],
                 "encoding_time": [...], "decoding_time": [...]}}
with one entry per quality level, each averaged over the images; bpp in bits per pixel, PSNR and
MS-SSIM-dB in dB, times in seconds per image. ("quality" is our addition: the codec's setting.)
Records may also hold, beside "results" (where CompressAI's plot tool does not look), "per_image":
    {"images": [file names], "bpp": [[one per image] per quality], "psnr-rgb": [[...]], "ms-ssim": [[...]]}
from which per-image BD-rates are computed.

BD-rates are given over the quality range both curves cover (the classic figure, which moves when a
codec's own end points move) and over each named PSNR window of `BD_WINDOWS`: the fixed window
`FIXED_PSNR_WINDOW` (26..31.5 dB, entry key "fixed_window") and the high-quality window `HIGH_PSNR_WINDOW`
(30..36 dB, entry key "high_window"); each is clipped, and flagged, where a curve does not reach across it.
Per-image BD-rates use the fixed window alone.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from metrics import FIXED_PSNR_WINDOW, HIGH_PSNR_WINDOW, bd_rate, bd_rate_window, ms_ssim_db
from reference_curves import SOURCE_COMMIT, SOURCE_REPO, ReferenceCurve

__all__ = [
    "Curve",
    "BDWindow",
    "BD_WINDOWS",
    "ANCHOR_KEYS",
    "curve_from_record",
    "curve_from_reference",
    "bd_rate_entries",
    "per_image_bd_rates",
    "bd_rate_document",
    "write_json",
    "plot_rd",
    "write_markdown",
]

Record = Mapping[str, Any]

# Codecs that serve as BD-rate anchors when they were measured, in the order of the tables.
ANCHOR_KEYS = ("jpeg", "webp", "avif", "jpegxl", "heic")
# The anchor of the per-image BD-rates (issue 12 reports the median and worst image against WebP).
PER_IMAGE_ANCHOR = "webp"
BD_METRICS = (("psnr-rgb", "PSNR"), ("ms-ssim-db", "MS-SSIM dB"))
REPORTED_METHOD = "cubic"


class BDWindow(NamedTuple):
    """A named PSNR window of the BD-rates: key, the key of its figures in each entry and of its description
    in bd_rate.json ("fixed_window"); title, its name in results.md and on the plot ("fixed PSNR window");
    window, (lo, hi) in dB."""

    key: str
    title: str
    window: tuple[float, float]


# The PSNR windows every PSNR entry is computed over, in the order of results.md.
BD_WINDOWS = (
    BDWindow("fixed_window", "fixed PSNR window", FIXED_PSNR_WINDOW),
    BDWindow("high_window", "high-quality PSNR window", HIGH_PSNR_WINDOW),
)


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


def _window_entry(anchor: Curve, test: Curve, window: tuple[float, float]) -> dict[str, Any]:
    """The BD-rate (PSNR) of `test` against `anchor` over `window`, both methods, with coverage."""
    out: dict[str, Any] = {"window": list(window), "range": None, "covers_window": None}
    notes = []
    for method in ("cubic", "pchip"):
        try:
            r = bd_rate_window(anchor.bpp, anchor.psnr, test.bpp, test.psnr, window=window, method=method)
        except ValueError as exc:
            out[method] = None
            notes.append(f"{method}: {exc}")
            continue
        out[method] = r.value
        out["range"], out["covers_window"] = list(r.range), r.covers_window
        if r.note and r.note not in notes:
            notes.append(r.note)
    out["note"] = "; ".join(notes)
    return out


def _overlap_entry(anchor: Curve, test: Curve, metric: str) -> dict[str, Any]:
    """The BD-rate of `test` against `anchor` in `metric` over the range both curves cover, both methods."""
    qa, qt = anchor.quality(metric), test.quality(metric)
    entry: dict[str, Any] = {
        "test": test.label,
        "anchor": anchor.label,
        "test_key": test.key,
        "anchor_key": anchor.key,
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
    return entry


def bd_rate_entries(curves: Sequence[Curve], windows: Sequence[BDWindow] = BD_WINDOWS) -> list[dict[str, Any]]:
    """BD-rate of every curve against every measured anchor (`ANCHOR_KEYS`) other than itself.

    One entry per (test, anchor, metric): {"test", "anchor", "metric", "cubic", "pchip", "range", "note"}
    and one key per window of `windows` (by default "fixed_window" and "high_window"); cubic/pchip are
    percentages over the shared quality range (None where they cannot be computed, then "note" says why),
    range is that interval in dB. Each window key (PSNR entries only, else None) holds the same over that
    window: {"window", "range", "covers_window", "cubic", "pchip", "note"}, where range is the part of the
    window both curves cover and note says what was clipped.
    """
    anchors = [c for c in curves if c.key in ANCHOR_KEYS and not c.published]
    anchors.sort(key=lambda c: ANCHOR_KEYS.index(c.key))
    entries = []
    for test in curves:
        for anchor in anchors:
            if anchor.key == test.key:
                continue
            for metric, _ in BD_METRICS:
                entry = _overlap_entry(anchor, test, metric)
                for w in windows:
                    entry[w.key] = _window_entry(anchor, test, w.window) if metric == "psnr-rgb" else None
                entries.append(entry)
    return entries


def per_image_bd_rates(
    records: Mapping[str, Record],
    anchor_key: str = PER_IMAGE_ANCHOR,
    window: tuple[float, float] = FIXED_PSNR_WINDOW,
    method: str = "cubic",
) -> list[dict[str, Any]]:
    """Per-image BD-rate (PSNR, over `window`) of every record with per-image data against `anchor_key`.

    One summary per test codec: {"test", "anchor", "metric", "method", "window", "images": {name: {"bd_rate",
    "range", "covers_window", "note"}}, "median", "worst", "worst_image", "best", "best_image", "computed",
    "covering_window"}. An image whose curves share no part of the window has bd_rate None and is left out
    of median/worst (its note says why); one covered only in part is kept, flagged by covers_window False.
    Empty when the anchor has no per-image data.
    """
    anchor = records.get(anchor_key)
    if anchor is None or "per_image" not in anchor:
        return []
    a_img = anchor["per_image"]
    summaries = []
    for key, record in records.items():
        if key == anchor_key or "per_image" not in record:
            continue
        t_img = record["per_image"]
        per: dict[str, dict[str, Any]] = {}
        for name in t_img["images"]:
            if name not in a_img["images"]:
                continue
            i, j = a_img["images"].index(name), t_img["images"].index(name)
            try:
                r = bd_rate_window(
                    [row[i] for row in a_img["bpp"]], [row[i] for row in a_img["psnr-rgb"]],
                    [row[j] for row in t_img["bpp"]], [row[j] for row in t_img["psnr-rgb"]],
                    window=window, method=method,  # type: ignore[arg-type]
                )
                per[name] = {"bd_rate": r.value, "range": list(r.range), "covers_window": r.covers_window,
                             "note": r.note}
            except ValueError as exc:
                per[name] = {"bd_rate": None, "range": None, "covers_window": False, "note": str(exc)}
        values = {n: e["bd_rate"] for n, e in per.items() if e["bd_rate"] is not None}
        summary: dict[str, Any] = {
            "test": record["name"],
            "anchor": anchor["name"],
            "metric": "psnr-rgb",
            "method": method,
            "window": list(window),
            "images": per,
            "computed": len(values),
            "covering_window": sum(1 for e in per.values() if e["covers_window"]),
            "median": None, "worst": None, "worst_image": None, "best": None, "best_image": None,
        }
        if values:
            worst = max(values, key=values.__getitem__)
            best = min(values, key=values.__getitem__)
            summary.update(median=float(statistics.median(values.values())), worst=values[worst],
                           worst_image=worst, best=values[best], best_image=best)
        summaries.append(summary)
    return summaries


def _window_description(w: BDWindow) -> dict[str, Any]:
    """What bd_rate.json says, under `w.key`, about the figures of the window `w` in each entry."""
    return {
        "metric": "psnr-rgb",
        "window_db": list(w.window),
        "meaning": f"each entry's {w.key}: the same fits (on all points of each curve), integrated over "
        "this PSNR window instead of the curves' overlap; where a curve does not reach across the window "
        "the interval is clipped to what both curves cover (no extrapolation), covers_window is false "
        "and range/note say what was used",
    }


def bd_rate_document(
    entries: Sequence[Mapping[str, Any]],
    per_image: Sequence[Mapping[str, Any]] = (),
    windows: Sequence[BDWindow] = BD_WINDOWS,
) -> dict[str, Any]:
    """The content of bd_rate.json: the entries of `bd_rate_entries` (and of `per_image_bd_rates`) with what
    they mean, one description block per window of `windows` under its key."""
    return {
        "reported_method": REPORTED_METHOD,
        "methods": {
            "cubic": "least-squares cubic polynomial of ln(bpp) against quality, integrated over the "
            "shared quality range (Bjontegaard, VCEG-M33)",
            "pchip": "piecewise cubic Hermite (Fritsch-Carlson) interpolation of ln(bpp) against quality",
        },
        **{w.key: _window_description(w) for w in windows},
        "units": "percent bit-rate change of test against anchor at equal quality; negative = fewer bits",
        "entries": list(entries),
        "per_image": list(per_image),
    }


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n")
    return path


def _draw_windows(ax: Any, windows: Sequence[BDWindow]) -> None:
    """Marks the PSNR windows on `ax`: the first as a light grey band, the others as dashed outlines."""
    for i, w in enumerate(windows):
        lo, hi = w.window
        label = f"{w.title} {lo:g}..{hi:g} dB"
        if i == 0:
            ax.axhspan(lo, hi, color="0.5", alpha=0.08, lw=0, label=label)
        else:
            ax.axhspan(lo, hi, facecolor="none", edgecolor="0.45", lw=0.9, linestyle=(0, (4, 3)), label=label)


def plot_rd(path: Path, curves: Sequence[Curve], title: str, windows: Sequence[BDWindow] = BD_WINDOWS) -> Path:
    """PSNR and MS-SSIM (dB) against bpp, side by side; published curves dashed; the BD-rate `windows`
    (PSNR, dB) marked on the PSNR plot (see `_draw_windows`; none when empty)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 6.2))
    max_bpp = max(max(c.bpp) for c in curves)
    for ax, (metric, ylabel) in zip(axes, (("psnr-rgb", "PSNR RGB [dB]"), ("ms-ssim-db", "MS-SSIM [dB]"))):
        for c in curves:
            style = dict(linestyle="--", marker="x", alpha=0.8) if c.published else dict(linestyle="-", marker="o")
            ax.plot(c.bpp, c.quality(metric), label=c.label, markersize=4, **style)
        if metric == "psnr-rgb":
            _draw_windows(ax, windows)
        ax.set_xlabel("bit-rate [bpp]")
        ax.set_ylabel(ylabel)
        ax.set_xlim(0, min(max_bpp, 3.0) * 1.05)
        ax.grid(True, alpha=0.4)
    handles, labels = axes[0].get_legend_handles_labels()  # one legend for both, under the plots
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle(title)
    rows = -(-len(labels) // min(4, len(labels)))
    fig.tight_layout(rect=(0, 0.035 * rows + 0.01, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.1f} %"


def _fmt_db(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.2f}"


def _bd_table(
    lines: list[str], title: str, tests: Sequence[str], anchors: Sequence[str], published: set[str],
    cell: Mapping[tuple[str, str], Mapping[str, Any] | None], mark: str = "",
) -> None:
    """Appends one BD-rate table: rows `tests`, columns `anchors`, cells "cubic (pchip)"; a cell whose
    entry has covers_window False gets `mark`."""
    lines += ["", title, "", "| codec | " + " | ".join(f"vs {a}" for a in anchors) + " |",
              "|---" + "|---:" * len(anchors) + "|"]
    for t in tests:
        row = []
        for a in anchors:
            e = cell.get((t, a))
            if e is None:
                row.append("")
                continue
            has_value = e.get("cubic") is not None or e.get("pchip") is not None
            flag = mark if mark and e.get("covers_window") is False and has_value else ""
            row.append(f"{_pct(e['cubic'])} ({_pct(e['pchip'])}){flag}")
        lines.append(f"| {t}{'*' if t in published else ''} | " + " | ".join(row) + " |")


def _window_section(
    lines: list[str], w: BDWindow, tests: Sequence[str], anchors: Sequence[str], published: set[str],
    cell: Mapping[tuple[str, str, str], Mapping[str, Any]],
) -> None:
    """Appends the section of the window `w` (PSNR): its table from the entries' `w.key` figures, cells
    computed over part of the window marked †, and the notes of those and of the n/a cells. Nothing when
    no entry has figures for `w`."""
    window = next((e[w.key]["window"] for e in cell.values() if e.get(w.key)), None)
    if window is None:
        return
    lo, hi = window
    lines += [
        "",
        f"### Over the {w.title} {lo:g}..{hi:g} dB",
        "",
        f"The fits are those of the overlap figures below (all points of each curve), integrated over PSNR "
        f"{lo:g}..{hi:g} dB whatever the curves' end points. Nothing is extrapolated: a cell marked † is "
        "computed over only the part of the window that both curves cover (listed under the table).",
    ]
    figures = {(t, a): (cell[(t, a, "psnr-rgb")].get(w.key) if (t, a, "psnr-rgb") in cell else None)
               for t in tests for a in anchors}
    _bd_table(lines, f"BD-rate (PSNR, {lo:g}..{hi:g} dB):", tests, anchors, published, figures, mark=" †")
    clipped = sorted({f"{t} vs {a}: {e['note']}" for (t, a), e in figures.items() if e is not None and e["note"]})
    if clipped:
        lines += ["", "† and n/a:", ""] + [f"- {c}" for c in clipped]


def write_markdown(
    path: Path,
    header: Iterable[str],
    records: Mapping[str, Record],
    bd_entries: Sequence[Mapping[str, Any]],
    references: Sequence[ReferenceCurve],
    per_image: Sequence[Mapping[str, Any]] = (),
    windows: Sequence[BDWindow] = BD_WINDOWS,
) -> Path:
    """The human-readable summary: notes, BD-rate tables (one section per window of `windows` that the
    entries have figures for, overlap, per image), one table per codec, the published points."""
    lines = list(header)

    lines += ["", "## BD-rate", ""]
    if bd_entries:
        tests = list(dict.fromkeys(e["test"] for e in bd_entries))
        ranked = sorted({(ANCHOR_KEYS.index(e["anchor_key"]), e["anchor"]) for e in bd_entries})
        anchors = [label for _, label in ranked]
        published = {e["test"] for e in bd_entries if e["published_test"]}
        cell = {(e["test"], e["anchor"], e["metric"]): e for e in bd_entries}
        lines += [
            f"Bjøntegaard delta rate: {REPORTED_METHOD} polynomial fit of log(bpp) against quality (reported), "
            "piecewise-cubic (pchip) variant in brackets. Negative: fewer bits than the anchor for the same "
            "quality. Rows marked * are published curves (not re-measured) against our measured anchors.",
        ]
        for w in windows:
            _window_section(lines, w, tests, anchors, published, cell)
        lines += ["", "### Over the range both curves cover"]
        for metric, metric_label in BD_METRICS:
            overlap = {(t, a): cell.get((t, a, metric)) for t in tests for a in anchors}
            _bd_table(lines, f"BD-rate ({metric_label}, overlap):", tests, anchors, published, overlap)
        notes = sorted({e["note"] for e in bd_entries if e["note"]})
        if notes:
            lines += ["", "n/a: " + " / ".join(notes)]
    else:
        lines.append(f"No anchor ({', '.join(ANCHOR_KEYS)}) was measured, so no BD-rate.")

    if per_image:
        lines += ["", "### Per image", ""]
        s0 = per_image[0]
        lo, hi = s0["window"]
        lines += [
            f"BD-rate of each image's curve against the same image's {s0['anchor']} curve ({s0['method']} fit, PSNR "
            f"{lo:g}..{hi:g} dB, clipped to what both curves of that image cover, nothing extrapolated). "
            "\"covering\" counts the images whose two curves span the whole window.",
            "",
            f"| codec | median vs {s0['anchor']} | worst (image) | best (image) | images computed | covering |",
            "|---|---:|---|---|---:|---:|",
        ]
        for s in per_image:
            lines.append(
                f"| {s['test']} | {_pct(s['median'])} | {_pct(s['worst'])} ({s['worst_image']}) | "
                f"{_pct(s['best'])} ({s['best_image']}) | {s['computed']} / {len(s['images'])} | "
                f"{s['covering_window']} |"
            )
        for s in per_image:
            if s["test"] != "vqcodec":
                continue
            lines += ["", f"{s['test']} against {s['anchor']}, image by image:", "",
                      "| image | BD-rate | PSNR range used (dB) |", "|---|---:|---|"]
            for name, e in s["images"].items():
                if e["range"] is None:
                    used = f"none: {e['note']}"
                else:
                    used = f"{e['range'][0]:.2f}..{e['range'][1]:.2f}{'' if e['covers_window'] else ' (part)'}"
                lines.append(f"| {name} | {_pct(e['bd_rate'])} | {used} |")

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
