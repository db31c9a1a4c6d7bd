#!/usr/bin/env python
"""Speech to listen to: vqcodec beside Codec2 and Opus at matched rates, as an HTML page of players and
spectrograms (issue 21).

    python benchmarks/audio_listening.py                   # 3 bundled clips -> benchmarks/results/audio/listening/
    python benchmarks/audio_listening.py --quick           # the shortest bundled clip, into a temporary folder
    python benchmarks/audio_listening.py --clips vctk/p225_022.wav,/path/to/any.flac --out DIR
    python benchmarks/audio_listening.py --check-browser   # also load the page in headless Chromium

For every clip (a path relative to data/speech/, or any audio file):
  1. each baseline setting shown (Codec2 1200 and 3200, Opus --bitrate 6; `--quick`: Codec2 3200 and Opus 6;
     those whose tools are installed, see audio_codecs.py) codes the clip; its rate is the real file's
     bytes x 8 / seconds on this clip;
  2. vqcodec codes it at the quality whose file on this clip comes closest to that rate (searched over
     1..vqcodec.max_quality("audio") through the public API; its file sizes grow with the quality);
     without any baseline, vqcodec at its lowest, middle and top quality;
  3. every output is decoded, brought to 16 kHz (soxr; the rate every codec is scored at), aligned to the
     original (the codec's delay removed, as audio_rate_distortion.py aligns it) and written as 16-bit
     PCM WAV beside a log-magnitude spectrogram PNG (0-8 kHz, the original's colour scale:
     speech_figures.py); the original is written the same way (16 kHz, so that all players compare alike).

The page shows, per clip, the original, then one row per matched rate: the baseline and vqcodec side by
side, each with its player, spectrogram, kbps on this clip, STOI and PESQ-WB, and, when their packages are
installed (`pip install -e ".[speech-bench]"`), DNSMOS OVRL, ViSQOL, f0 error and V/UV F1
(speech_metrics.py). Outputs in --out: index.html (self-contained: relative links only), media/*.wav and
media/*.png, listening.json (every number on the page).

`--check-browser` loads the page in headless Chromium (`chromium` or `chromium-browser` on PATH; Debian:
`apt-get install -y chromium`): every <audio> and <img> it links must exist, a screenshot must come back
non-blank, and in the DOM Chromium leaves after its scripts ran every player must have loaded its WAV's
metadata with the WAV's duration. Without Chromium it says so and skips.
"""
from __future__ import annotations

import argparse
import html
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable, Sequence

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # sibling helper modules, also when imported rather than run
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from headless_page import browser_check_step, check_not_blank, find_chromium, run_chromium, screenshot  # noqa: E402,F401
from audio_codecs import (  # noqa: E402
    BASELINE_KEYS,
    EVAL_RATE,
    AudioCodec,
    Clip,
    VqAudioCodec,
    baseline_codecs,
    load_vqcodec_audio,
    to_pcm16,
)
from audio_rate_distortion import AUDIO_EXTENSIONS, load_clip  # noqa: E402
from speech_figures import spectrogram_png  # noqa: E402
from speech_metrics import METRICS, SpeechScorer, shift  # noqa: E402

PROG = "audio_listening.py"
REPO = HERE.parent
SPEECH = REPO / "data" / "speech"
DEFAULT_OUT = HERE / "results" / "audio" / "listening"
DEFAULT_CLIPS = ("vctk/p226_011.wav", "librispeech-test-other/2414-128291-0000.flac", "ljspeech/LJ001-0002.wav")
SHOWN = {"codec2": ("1200", "3200"), "opus": ("6",)}
QUICK_SHOWN = {"codec2": ("3200",), "opus": ("6",)}
MAX_LAG_S = 0.1
SCREEN = "1400,2400"
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"  # players may load media without a click


@dataclass
class Cell:
    """One output on the page: a codec at a setting on one clip, its files and its numbers."""

    codec: str  # key: "original", "vqcodec", "opus", "codec2"
    name: str
    setting: str
    label: str
    nbytes: int | None
    kbps: float | None
    wav: str
    png: str
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClipPage:
    """One clip: the original and the rows of matched outputs (baseline, vqcodec)."""

    key: str
    seconds: float
    rate: int
    original: Cell
    rows: list[list[Cell]]


# ------------------------------------------------------------------------------------------------ clips
def resolve_clip(spec: str) -> tuple[Path, str]:
    """A clip spec -> (file, "set/file" key): a path relative to data/speech/, else any existing file (its
    folder's name is the set)."""
    for path in (SPEECH / spec, Path(spec).expanduser()):
        if path.is_file():
            path = path.resolve()
            return path, f"{path.parent.name}/{path.name}"
    raise ValueError(f"clip {spec!r} is neither a file under {SPEECH} nor an existing file")


def shortest_bundled() -> str:
    """The shortest bundled clip, as "set/file"."""
    files = sorted(p for p in SPEECH.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    best = min(files, key=lambda p: (sf.info(str(p)).duration, str(p)))
    return f"{best.parent.name}/{best.name}"


# ------------------------------------------------------------------------------------------------ matching
def closest(size_of: Callable[[int], int], lo: int, hi: int, target: float) -> int:
    """The setting in lo..hi whose size is closest to `target` (ties: the smaller setting), for sizes that
    grow with the setting: a binary search for the first size >= target, then it or the one below."""
    a, b = lo, hi
    while a < b:
        mid = (a + b) // 2
        if size_of(mid) >= target:
            b = mid
        else:
            a = mid + 1
    if a > lo and abs(size_of(a - 1) - target) <= abs(size_of(a) - target):
        return a - 1
    return a


class _VqSizes:
    """vqcodec's coded size of one clip by quality, each quality encoded once."""

    def __init__(self, vq: VqAudioCodec, clip: Clip) -> None:
        self.vq, self.clip, self.sizes = vq, clip, {}

    def __call__(self, q: int) -> int:
        if q not in self.sizes:
            self.sizes[q] = len(self.vq.api.encode_audio(self.clip.samples, self.clip.rate, q))
        return self.sizes[q]


# ------------------------------------------------------------------------------------------------ coding
def _stem(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in key.replace("/", "__").rsplit(".", 1)[0])


def write_wav(path: Path, x: np.ndarray) -> float:
    """16-bit PCM mono WAV at 16 kHz; returns its seconds."""
    pcm = to_pcm16(x)
    sf.write(str(path), pcm, EVAL_RATE, subtype="PCM_16")
    return len(pcm) / EVAL_RATE


def make_cell(codec: AudioCodec | None, setting: str, clip: Clip, key: str, media: Path, workdir: Path,
              scorer: SpeechScorer | None) -> Cell:
    """Code `clip` with `codec` at `setting` (None: the original), write its WAV and PNG, score it."""
    from vqcodec.metrics.audio import score

    stem = _stem(key)
    if codec is None:
        name, fname = "uncoded original (16 kHz)", f"{stem}__original"
        aligned, nbytes, kbps = clip.reference, None, None
        metrics: dict[str, Any] = dict(scorer.original(key, clip.reference)) if scorer else {}
    else:
        shown = {"vqcodec": f"q{setting}", "opus": f"--bitrate {setting}"}.get(codec.key, setting)
        name, fname = f"{codec.name} {shown}", f"{stem}__{codec.key}_{setting}"
        coded = codec.code(clip, setting, workdir / f"coded{codec.extension}", workdir)
        nbytes, kbps = coded.nbytes, coded.nbytes * 8 / clip.seconds / 1000
        s = score(clip.reference, coded.decoded, EVAL_RATE, max_lag_s=MAX_LAG_S)
        aligned = shift(clip.reference, coded.decoded, s["lag_samples"])[1]
        metrics = {"stoi": s["stoi"], "pesq_wb": None if math.isnan(s["pesq_wb"]) else s["pesq_wb"],
                   "lag_samples": s["lag_samples"]}
        if scorer is not None:
            metrics.update(scorer.score(key, clip.reference, coded.decoded, s["lag_samples"]))
    seconds = write_wav(media / f"{fname}.wav", aligned)
    title = name if kbps is None else f"{name}: {kbps:.2f} kbps"
    spectrogram_png(media / f"{fname}.png", aligned, EVAL_RATE, title, reference=clip.reference)
    return Cell(codec.key if codec else "original", codec.name if codec else "original", setting, name, nbytes,
                kbps, f"media/{fname}.wav", f"media/{fname}.png", seconds, metrics)


def clip_page(clip: Clip, key: str, vq: VqAudioCodec | None, top: int, baselines: Sequence[AudioCodec],
              shown: dict[str, tuple[str, ...]], media: Path, scorer: SpeechScorer | None,
              say: Callable[[str], None]) -> ClipPage:
    """The original and every matched row of one clip."""
    with tempfile.TemporaryDirectory(prefix="vqcodec-listen-") as tmp:
        work = Path(tmp)
        original = make_cell(None, "", clip, key, media, work, scorer)
        rows: list[list[Cell]] = []
        sizes = _VqSizes(vq, clip) if vq is not None else None
        for codec in baselines:
            for setting in shown.get(codec.key, ()):
                b = make_cell(codec, setting, clip, key, media, work, scorer)
                row = [b]
                if vq is not None and sizes is not None:
                    q = closest(sizes, 1, top, b.nbytes or 0)
                    row.append(make_cell(vq, str(q), clip, key, media, work, scorer))
                rows.append(row)
        rows.sort(key=lambda r: r[0].kbps or 0.0)  # by the baseline's rate on this clip
        if not rows and vq is not None:
            for q in sorted({1, (1 + top) // 2, top}):
                rows.append([make_cell(vq, str(q), clip, key, media, work, scorer)])
    for row in rows:
        say(f"  {key}: " + " | ".join(f"{c.label} {c.kbps:.2f} kbps" for c in row))
    return ClipPage(key, clip.seconds, clip.rate, original, rows)


# ------------------------------------------------------------------------------------------------ page
_METRIC_TEXT = (("stoi", "STOI", 3), ("pesq_wb", "PESQ-WB", 2), ("dnsmos_ovrl", "DNSMOS OVRL", 2),
                ("visqol", "ViSQOL", 2), ("visqol_poly", "ViSQOL poly", 2), ("f0_cents", "f0 err (cents)", 0),
                ("vuv_f1", "V/UV F1", 2))

_SCRIPT = """<script>
// Marks every player with the duration Chromium decoded (data-loaded) or an error (data-error), and counts
// them in #player-status: what --check-browser reads back from the DOM.
(function () {
  var players = Array.prototype.slice.call(document.querySelectorAll('audio'));
  function tally() {
    var ok = players.filter(function (a) { return a.dataset.loaded; }).length;
    var bad = players.filter(function (a) { return a.dataset.error; }).length;
    document.getElementById('player-status').textContent =
      ok + ' of ' + players.length + ' players loaded' + (bad ? ', ' + bad + ' failed' : '');
  }
  players.forEach(function (a) {
    function done() { a.dataset.loaded = a.duration.toFixed(3); tally(); }
    a.addEventListener('loadedmetadata', done);
    a.addEventListener('error', function () { a.dataset.error = '1'; tally(); });
    if (a.readyState >= 1) { done(); }
    a.load();
  });
  tally();
})();
</script>"""


def _metric_line(c: Cell) -> str:
    parts = [f"{text} {c.metrics[k]:.{d}f}" for k, text, d in _METRIC_TEXT if c.metrics.get(k) is not None]
    return " &middot; ".join(html.escape(p) for p in parts)


def _cell_html(c: Cell, vq: bool) -> str:
    esc = html.escape
    rate = "" if c.kbps is None else f" &middot; {c.kbps:.2f} kbps ({c.nbytes} bytes)"
    return (f'<td class="{"vq" if vq else ""}"><div class="label">{esc(c.label)}{rate}</div>'
            f'<audio controls preload="metadata" src="{esc(c.wav)}"></audio>'
            f'<div><a href="{esc(c.png)}"><img src="{esc(c.png)}" alt="spectrogram: {esc(c.label)}"></a></div>'
            f'<div class="m">{_metric_line(c)}</div></td>')


def write_html(out: Path, pages: Sequence[ClipPage], meta: dict[str, Any]) -> Path:
    """index.html: per clip the original, then one row per matched rate (baseline | vqcodec)."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>vqcodec: speech to listen to at matched rates</title>",
        "<style>body{font-family:sans-serif;margin:16px;max-width:1500px}table{border-collapse:collapse;"
        "margin:6px 0 28px}td{border:1px solid #bbb;padding:6px;vertical-align:top}td.vq .label{color:#a00}"
        ".label{font-weight:bold;margin-bottom:4px}audio{width:100%}img{max-width:100%;display:block}"
        ".m{font-size:90%;color:#333;margin-top:4px}</style>",
        "</head><body>",
        "<h1>vqcodec beside Codec2 and Opus at matched rates</h1>",
        f"<p>{esc(meta['how'])}</p>",
        f"<p>Codecs: {esc('; '.join(meta['codecs']))}.</p>",
    ]
    if meta["skipped"]:
        parts.append("<p>Left out: " + esc("; ".join(f"{k}: {v}" for k, v in meta["skipped"].items())) + ".</p>")
    parts += [f"<p>Made with <code>{esc(meta['command'])}</code> on {esc(meta['date'])}.</p>",
              '<p id="player-status">players not checked (scripts off)</p>']
    for p in pages:
        parts += [f'<h2 id="{esc(_stem(p.key))}">{esc(p.key)} ({p.seconds:.2f} s, {p.rate} Hz)</h2>',
                  "<table>", "<tr>" + _cell_html(p.original, False) + "<td></td></tr>"]
        for row in p.rows:
            parts.append("<tr>" + "".join(_cell_html(c, c.codec == "vqcodec") for c in row)
                         + "<td></td>" * (2 - len(row)) + "</tr>")
        parts.append("</table>")
    parts += [_SCRIPT, "</body></html>"]
    path = out / "index.html"
    path.write_text("\n".join(parts) + "\n")
    return path


# ------------------------------------------------------------------------------------------------ browser
class _Links(HTMLParser):
    """src of every <img> and <audio>, and the data-* attributes of every <audio>."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.players: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("img", "audio", "source"):
            self.sources += [v for k, v in attrs if k == "src" and v]
        if tag == "audio":
            self.players.append(dict(attrs))


def _links(text: str) -> _Links:
    parser = _Links()
    parser.feed(text)
    return parser


def referenced_files(page: Path) -> list[str]:
    """The src of every <img>, <audio> and <source> of an HTML file, in order."""
    return _links(page.read_text()).sources


def missing_files(page: Path) -> list[str]:
    """The sources of `page` that are not files beside it (absolute URLs count as missing: no network)."""
    return [s for s in referenced_files(page) if "://" in s or not (page.parent / s).is_file()]


def check_in_browser(page: Path, chromium: str, timeout: float = 120.0) -> dict[str, Any]:
    """Load `page` in headless Chromium: raises RuntimeError if it links a missing file, if the screenshot is
    missing or blank, or if a player did not load its WAV (or loaded a duration other than the file's).
    Returns what was checked."""
    missing = missing_files(page)
    if missing:
        raise RuntimeError(f"{page} links files that do not exist: {', '.join(missing)}")
    with tempfile.TemporaryDirectory(prefix="vqcodec-listen-shot-") as tmp:
        shown = check_not_blank(screenshot(page, chromium, Path(tmp), SCREEN, timeout))
        dom = run_chromium(chromium, Path(tmp), AUTOPLAY, "--virtual-time-budget=15000", "--dump-dom",
                           page.resolve().as_uri(), timeout=timeout)
    players = _links(dom.stdout).players
    expected = _links(page.read_text()).players
    if len(players) != len(expected) or not players:
        raise RuntimeError(f"chromium's DOM has {len(players)} players, the page {len(expected)} "
                           f"(exit {dom.returncode}): {dom.stderr.strip()[-800:]}")
    bad = []
    for p in players:
        src, got = str(p.get("src")), p.get("data-loaded")
        if got is None:
            bad.append(f"{src} ({'a decoding error' if p.get('data-error') else 'no metadata'})")
            continue
        want = sf.info(str(page.parent / src)).duration
        if abs(float(got) - want) > 0.01:
            bad.append(f"{src} (loaded {got} s, the file has {want:.3f} s)")
    if bad:
        raise RuntimeError("players that did not load their WAV: " + "; ".join(bad))
    return {"browser": chromium, **shown, "players_loaded": len(players), "files": len(referenced_files(page))}


# ------------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Listening page: vqcodec beside Codec2 and Opus at matched "
                                "rates, with players and spectrograms.")
    p.add_argument("--clips", help="comma list of clips: paths under data/speech/ (e.g. vctk/p225_022.wav) or any "
                   f"audio files (default {','.join(DEFAULT_CLIPS)}; --quick: the shortest bundled clip)")
    p.add_argument("--codecs", default=",".join(("vqcodec", *BASELINE_KEYS)),
                   help="comma list from vqcodec,opus,codec2 (default all; a baseline whose tools are missing is "
                        "skipped with a note)")
    p.add_argument("--skip-metrics", default="", help=f"comma list from {','.join(METRICS)} to leave out")
    p.add_argument("--out", type=Path, help=f"output folder (default {DEFAULT_OUT.relative_to(REPO)}; with --quick "
                   "a new temporary folder)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for vqcodec (default 1)")
    p.add_argument("--decoder", help="decode vqcodec's files with this decoder (the files are the same): an "
                   "installed decoder's id, 'model' (the speech model's own, as 0.5.x decoded), or a weights file "
                   "of `vqcodec train audio-decoder`; default: the one the files name")
    p.add_argument("--quick", action="store_true", help="smoke run: the shortest bundled clip, Codec2 3200 and "
                   "Opus 6 only")
    p.add_argument("--check-browser", action="store_true",
                   help="load the page in headless Chromium and check it (skipped with a note without chromium)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    keys = list(dict.fromkeys(k.strip().lower() for k in args.codecs.split(",") if k.strip()))
    if not keys or set(keys) - {"vqcodec", *BASELINE_KEYS}:
        parser.error(f"--codecs {args.codecs!r}: choose from vqcodec,{','.join(BASELINE_KEYS)}")
    skip = tuple(m.strip().lower() for m in args.skip_metrics.split(",") if m.strip())
    if set(skip) - set(METRICS):
        parser.error(f"--skip-metrics {args.skip_metrics!r}: choose from {', '.join(METRICS)}")
    try:
        specs = args.clips.split(",") if args.clips else ([shortest_bundled()] if args.quick else list(DEFAULT_CLIPS))
        clips = [resolve_clip(s.strip()) for s in specs if s.strip()]
    except ValueError as exc:
        parser.error(str(exc))
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731 - progress on stderr, paths on stdout

    vq, top = None, 0
    if "vqcodec" in keys:
        loaded = load_vqcodec_audio()
        if isinstance(loaded, str):
            print(f"{PROG}: error: cannot use vqcodec: {loaded}", file=sys.stderr)
            return 1
        api, top = loaded
        qualities = tuple(str(q) for q in range(1, top + 1))
        if args.decoder is not None:
            try:
                from vqcodec.registry import default_registry

                default_registry().decoder_path(args.decoder)
            except FileNotFoundError as e:
                parser.error(f"--decoder: {e}")
        vq = VqAudioCodec(api, qualities, qualities, decoder=None if args.decoder is None else str(args.decoder))
    baselines, skipped = baseline_codecs([k for k in BASELINE_KEYS if k in keys])
    for key, why in skipped.items():
        say(f"note: skipping {key}: {why}")
    import torch

    torch.set_num_threads(args.threads)
    scorer = SpeechScorer(skip, threads=args.threads)
    for metric, why in scorer.skipped.items():
        say(f"note: metric {metric} skipped: {why}")
        skipped[f"metric {metric}"] = why
    if args.out is not None:
        out = args.out.resolve()
    elif args.quick:
        out = Path(tempfile.mkdtemp(prefix="vqcodec-listen-quick-"))
    else:
        out = DEFAULT_OUT
    media = out / "media"
    media.mkdir(parents=True, exist_ok=True)
    shown = QUICK_SHOWN if args.quick else SHOWN
    say(f"{len(clips)} clip(s); vqcodec 1..{top if vq else '-'} against "
        f"{', '.join(f'{b.name} {list(shown[b.key])}' for b in baselines) or 'no baseline'}; writing to {out}")
    t0 = time.perf_counter()
    pages = []
    for path, key in clips:
        clip = load_clip(path, path.parent, path.parent.name)  # as the rate-distortion benchmark loads it
        pages.append(clip_page(clip, key, vq, top, baselines, shown, media, scorer, say))
    command = " ".join(["python benchmarks/audio_listening.py", *(sys.argv[1:] if argv is None else argv)])
    meta = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "seconds": round(time.perf_counter() - t0, 1),
        "how": ("Each row pairs a baseline setting with vqcodec at the quality whose file for this clip comes "
                "closest to the baseline's (rates are the real files' bytes x 8 / seconds on this clip). Every "
                "output is played at 16 kHz, aligned to the original (codec delay removed), as 16-bit PCM WAV; "
                "the original is resampled to 16 kHz the same way. Spectrograms: 40 ms Hann windows, log "
                "magnitude, 0-8 kHz, colour scale of the original. STOI and PESQ-WB against the original; DNSMOS "
                "P.835 OVRL (non-intrusive); ViSQOL v3 speech (lattice / polynomial mapping); f0 error: median "
                "cents over frames voiced in both; V/UV F1 against the original's voicing."),
        "codecs": ([vq.description] if vq else []) + [b.description for b in baselines],
        "skipped": skipped,
    }
    page = write_html(out, pages, meta)
    summary = {**meta, "clips": [{"key": p.key, "seconds": p.seconds, "rate": p.rate,
                                  "original": asdict(p.original), "rows": [[asdict(c) for c in r] for r in p.rows]}
                                 for p in pages]}
    (out / "listening.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(page)
    print(out / "listening.json")
    if args.check_browser and browser_check_step(page, check_in_browser, PROG, say):
        return 1
    say(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
