"""The speaker experiment (issue 11, a report, not a gate): does the speaker decoder's output sound like the
target speaker, and do the words survive?

    python benchmarks/speaker_conversion.py                   # the full run (LibriSpeech train-clean-100)
    python benchmarks/speaker_conversion.py --quick --data D  # smoke run (CI: a synthetic folder, tiny models)

Data: the speaker decoder's own training folder (one utterance per speaker). Each utterance is split as the
decoder's training split it: its first 80 % ("training part") was trained on, its last 20 % ("held-out
part") never was. Everything tested here is a held-out part.

1. Speaker classifier. Features of a segment: mean and standard deviation over its speech frames (frames
   within 40 dB of its loudest) of 64-band log-mel spectra (32 ms windows, 10 ms hop), 128 numbers. A
   multinomial logistic regression (L2, LBFGS) over the 251 speakers is trained on 2 s windows of the
   training parts: the originals and the same windows through the ordinary codec at every evaluated stage
   count (so codec artefacts are not a cue for any class). Tested on the held-out parts: originals, ordinary
   decodes, and speaker-decoder decodes with the true speaker (the sanity check).
2. Conversion: the held-out parts of `--sources` speakers (half F, half M) decoded with each of `--targets`
   other speakers (half F, half M) at each stage count; the fraction the classifier assigns to the target,
   to the source and to anyone else. Control: the ordinary decode of the same pairs (its "target" rate is
   the classifier's chance of naming that speaker for unconverted audio).
3. Content: mel distance (vqcodec.metrics.audio, 80 bands) of the converted audio to the source segment
   decoded in its own voice (same words, other voice) against its distance to an unrelated utterance of the
   target speaker decoded in the target's own voice (other words, same voice), over the shorter length;
   STOI of the same pairs. The words survive where the first distance is clearly the smaller.
4. Pitch: the median F0 (autocorrelation, voiced frames) of converted audio against the source's and the
   target's median F0 (from their training parts): a voice cue that is not the recording channel.

Writes speaker_conversion.json and speaker_conversion.md to --out (default benchmarks/results/audio/).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RATE = 16000
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "speech" / "librispeech-train-clean-100"
WINDOW_S = 2.0
MAX_TRAIN_S = 8.0  # classifier windows per speaker come from the first 8 s of the training part
MAX_TEST_S = 4.0


# ------------------------------------------------------------------------------------------- features
_FB: dict[int, torch.Tensor] = {}


def logmel_stats(x: torch.Tensor, n_mels: int = 64) -> np.ndarray:
    """(T,) float32 16 kHz -> (2 * n_mels,) mean and std of log-mel frames within 40 dB of the loudest."""
    from vqcodec.audio.spectral import mel_filterbank

    if n_mels not in _FB:
        _FB[n_mels] = mel_filterbank(RATE, 512, n_mels)
    spec = torch.stft(x.float(), 512, 160, window=torch.hann_window(512), return_complex=True).abs() ** 2
    mel = torch.log(_FB[n_mels] @ spec + 1e-8)  # (n_mels, frames)
    energy = torch.log(spec.sum(0) + 1e-8)
    keep = energy > energy.max() - math.log(1e4)  # 40 dB
    m = mel[:, keep] if int(keep.sum()) >= 5 else mel
    return torch.cat([m.mean(1), m.std(1)]).numpy()


def median_f0(x: torch.Tensor) -> float:
    """Median fundamental frequency (Hz) of the voiced 40 ms frames of (T,) 16 kHz audio, NaN if none:
    the normalised autocorrelation's highest peak at a lag of 60..400 Hz, voiced where it is >= 0.5 and the
    frame within 35 dB of the loudest."""
    a = x.double().numpy()
    n, hop = 640, 160
    if len(a) < n:
        return math.nan
    frames = np.lib.stride_tricks.sliding_window_view(a, n)[::hop] * np.hanning(n)
    energy = (frames ** 2).sum(1)
    spec = np.fft.rfft(frames, 2 * n)
    ac = np.fft.irfft(np.abs(spec) ** 2)[:, :n]
    win_ac = np.fft.irfft(np.abs(np.fft.rfft(np.hanning(n), 2 * n)) ** 2)[:n]
    ac = ac / np.maximum(ac[:, :1], 1e-12) / (win_ac / win_ac[0])  # unbiased by the window's own decay
    lo, hi = RATE // 400, RATE // 60
    lag = lo + ac[:, lo:hi].argmax(1)
    peak = ac[np.arange(len(ac)), lag]
    voiced = (peak >= 0.5) & (energy > energy.max() * 10 ** -3.5)
    return float(np.median(RATE / lag[voiced])) if voiced.sum() >= 5 else math.nan


class SpeakerClassifier:
    """Standardised features -> multinomial logistic regression (L2), trained with LBFGS."""

    def __init__(self, num_classes: int, l2: float = 1e-3) -> None:
        self.num_classes, self.l2 = num_classes, l2

    def fit(self, x: np.ndarray, y: np.ndarray) -> "SpeakerClassifier":
        xt = torch.from_numpy(x).double()
        self.mean, self.std = xt.mean(0), xt.std(0).clamp_min(1e-6)
        xt = (xt - self.mean) / self.std
        yt = torch.from_numpy(y).long()
        self.w = torch.zeros(xt.shape[1], self.num_classes, dtype=torch.double, requires_grad=True)
        self.b = torch.zeros(self.num_classes, dtype=torch.double, requires_grad=True)
        opt = torch.optim.LBFGS([self.w, self.b], max_iter=300, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(xt @ self.w + self.b, yt) + self.l2 * (self.w ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return self

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        xt = (torch.from_numpy(np.atleast_2d(x)).double() - self.mean) / self.std
        return (xt @ self.w + self.b).argmax(1).numpy()


# ------------------------------------------------------------------------------------------- models
def load_models(speaker_weights: str | None):
    """(base AudioVQVAE, its id, SpeakerDecoder, its id) from the installed weights (or --speaker-weights)."""
    from vqcodec.audio.model import load_audio_model
    from vqcodec.audio.speaker_model import load_speaker_decoder
    from vqcodec.registry import default_registry

    reg = default_registry()
    comp = reg.defaults("audio")["vqvae"]
    base, base_id = load_audio_model(comp.path)
    path = speaker_weights
    if path is None:
        opt = reg.optional("audio", "speaker-decoder")
        if opt is None:
            raise SystemExit(f"no speaker decoder installed in {reg.folder}; pass --speaker-weights RUN/"
                             "audio_speaker_decoder.safetensors or train one with `vqcodec train speaker-decoder`")
        path = opt.path
    model, model_id = load_speaker_decoder(path, base, comp.weights_hash)
    return base, base_id, model, model_id


def pad_to(x: torch.Tensor, hop: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, (-x.numel()) % hop))


# ------------------------------------------------------------------------------------------- the run
def pick(rows: list[int], sexes: list[str], count: int, salt: str, exclude: set[int] = frozenset()) -> list[int]:
    """`count` rows, half F and half M where possible, in an order fixed by a hash of the row and `salt`."""
    order = sorted((r for r in rows if r not in exclude), key=lambda r: zlib.crc32(f"{salt}/{r}".encode()))
    f = [r for r in order if sexes[r] == "F"]
    m = [r for r in order if sexes[r] != "F"]
    out = f[: count // 2] + m[: count - count // 2]
    return out + [r for r in order if r not in out][: count - len(out)]


def fractions(pred: list[int], target: list[int], source: list[int]) -> dict:
    p, t, s = np.array(pred), np.array(target), np.array(source)
    n = max(len(p), 1)
    return {"target": float((p == t).sum() / n), "source": float((p == s).sum() / n),
            "other": float(((p != t) & (p != s)).sum() / n), "pairs": int(len(p))}


@torch.no_grad()
def run(args) -> dict:
    from vqcodec.audio.data import list_audio, load_audio
    from vqcodec.audio.speaker_model import heldout_start, speaker_of
    from vqcodec.metrics.audio import mel_distance, stoi

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    base, base_id, model, model_id = load_models(args.speaker_weights)
    spk = model.config
    hop = base.hop
    stages = sorted({min(s, base.cfg.num_stages) for s in args.stages})
    files = {speaker_of(p): p for p in list_audio(args.data)}
    rows = [i for i, s in enumerate(spk.speakers) if s in files]
    if len(rows) < 4:
        raise SystemExit(f"{args.data} holds {len(rows)} of the speaker decoder's speakers; give its training folder")
    sexes = list(spk.sexes) if spk.sexes else ["?"] * len(spk.speakers)
    clips = {r: load_audio(files[spk.speakers[r]]) for r in rows}
    train_part = {r: c[: heldout_start(c.numel(), hop)] for r, c in clips.items()}
    test_part = {r: c[heldout_start(c.numel(), hop):][: int(MAX_TEST_S * RATE)] for r, c in clips.items()}
    test_part = {r: t[: t.numel() // hop * hop] for r, t in test_part.items()}

    def codes(x: torch.Tensor) -> torch.Tensor:
        return base.encode_indices(pad_to(x, hop)[None])

    def plain(idx: torch.Tensor, s: int, n: int) -> torch.Tensor:
        return base.decode_indices(idx[:, :s])[0, :n]

    def as_speaker(idx: torch.Tensor, s: int, row: int, n: int) -> torch.Tensor:
        return model.decode_indices(idx[:, :s], row)[0, :n]

    # 1. the classifier, on 2 s windows of the training parts (originals + ordinary decodes)
    win = int(WINDOW_S * RATE)
    feats, labels = [], []
    for r in rows:
        part = train_part[r][: int(MAX_TRAIN_S * RATE)]
        idx = codes(part)
        versions = [part] + [plain(idx, s, part.numel()) for s in stages]
        for v in versions:
            for w0 in range(0, max(v.numel() - win, 0) + 1, win):
                feats.append(logmel_stats(v[w0:w0 + win]))
                labels.append(r)
    clf = SpeakerClassifier(len(spk.speakers)).fit(np.stack(feats), np.array(labels))
    test_idx = {r: codes(test_part[r]) for r in rows}
    acc_orig = float(np.mean([clf.predict(logmel_stats(test_part[r]))[0] == r for r in rows]))
    acc_codec, acc_true = {}, {}
    for s in stages:
        acc_codec[s] = float(np.mean([clf.predict(logmel_stats(plain(test_idx[r], s, test_part[r].numel())))[0] == r
                                      for r in rows]))
        acc_true[s] = float(np.mean([clf.predict(logmel_stats(as_speaker(test_idx[r], s, r, test_part[r].numel())))[0]
                                     == r for r in rows]))
    t_clf = time.perf_counter() - t_start

    # 2..4. conversion of sources to targets
    sources = pick(rows, sexes, args.sources, "speaker-bench-source")
    targets = pick(rows, sexes, args.targets, "speaker-bench-target", exclude=set(sources))
    f0_ref = {r: median_f0(train_part[r][: int(MAX_TRAIN_S * RATE)]) for r in set(sources) | set(targets)}
    per_stage = {}
    for s in stages:
        pred_conv, pred_ctrl, tgt, src, cross = [], [], [], [], []
        mel_src, mel_unrel, mel_base, stoi_src, stoi_unrel = [], [], [], [], []
        pitch_closer, st_to_tgt, st_to_src = [], [], []
        own = {r: as_speaker(test_idx[r], s, r, test_part[r].numel()) for r in set(sources) | set(targets)}
        for a in sources:
            n = test_part[a].numel()
            ctrl_pred = clf.predict(logmel_stats(plain(test_idx[a], s, n)))[0]
            for b in targets:
                y = as_speaker(test_idx[a], s, b, n)
                pred_conv.append(int(clf.predict(logmel_stats(y))[0]))
                pred_ctrl.append(int(ctrl_pred))
                tgt.append(b)
                src.append(a)
                cross.append(sexes[a] != sexes[b])
                m = min(n, own[b].numel())
                mel_src.append(mel_distance(own[a][:m], y[:m]))
                mel_unrel.append(mel_distance(own[b][:m], y[:m]))
                mel_base.append(mel_distance(own[a][:m], own[b][:m]))
                stoi_src.append(stoi(own[a][:m], y[:m]))
                stoi_unrel.append(stoi(own[b][:m], y[:m]))
                f0 = median_f0(y)
                fa, fb = f0_ref[a], f0_ref[b]
                if not any(math.isnan(v) for v in (f0, fa, fb)) and abs(12 * math.log2(fa / fb)) >= 2:
                    st_to_tgt.append(abs(12 * math.log2(f0 / fb)))
                    st_to_src.append(abs(12 * math.log2(f0 / fa)))
                    pitch_closer.append(st_to_tgt[-1] < st_to_src[-1])
        cross_a = np.array(cross)

        def subset(mask):
            return fractions([p for p, k in zip(pred_conv, mask) if k], [t for t, k in zip(tgt, mask) if k],
                             [q for q, k in zip(src, mask) if k])

        ratio = np.array(mel_src) / np.array(mel_unrel)
        per_stage[s] = {
            "kbps_raw": round(base.cfg.kbps(s), 3),
            "converted": fractions(pred_conv, tgt, src),
            "converted_cross_sex": subset(cross_a),
            "converted_same_sex": subset(~cross_a),
            "control_codec": fractions(pred_ctrl, tgt, src),
            "content": {
                "mel_to_source_own_voice": float(np.mean(mel_src)),
                "mel_to_unrelated_target_utterance": float(np.mean(mel_unrel)),
                "mel_source_vs_unrelated": float(np.mean(mel_base)),
                "ratio_median": float(np.median(ratio)),
                "closer_to_source_fraction": float((ratio < 1).mean()),
                "stoi_to_source_own_voice": float(np.mean(stoi_src)),
                "stoi_to_unrelated_target_utterance": float(np.mean(stoi_unrel)),
            },
            "pitch": {
                "pairs": len(pitch_closer),
                "closer_to_target_fraction": float(np.mean(pitch_closer)) if pitch_closer else None,
                "median_semitones_to_target": float(np.median(st_to_tgt)) if st_to_tgt else None,
                "median_semitones_to_source": float(np.median(st_to_src)) if st_to_src else None,
            },
        }
    best = choose_stages(per_stage)
    return {
        "command": " ".join(["python benchmarks/speaker_conversion.py", *sys.argv[1:]]),
        "data": str(args.data), "speaker_decoder": model_id, "base_model": base_id,
        "speakers_in_data": len(rows), "stages": stages, "sources": [spk.speakers[r] for r in sources],
        "targets": [spk.speakers[r] for r in targets],
        "classifier": {
            "features": "mean+std of 64-band log-mel frames (32 ms / 10 ms), speech frames only",
            "model": "multinomial logistic regression, L2 1e-3, LBFGS",
            "train_windows": len(labels), "window_s": WINDOW_S,
            "train_on": "2 s windows of the training parts (first 8 s), originals + ordinary codec decodes",
            "test_on": f"held-out parts (last 20 % of each utterance, at most {MAX_TEST_S:g} s), one per speaker",
            "accuracy_original": acc_orig,
            "accuracy_codec": acc_codec,
            "accuracy_speaker_decoder_true_speaker": acc_true,
            "chance": 1 / len(rows),
        },
        "per_stage": per_stage,
        "best_stages": best,
        "best_rule": "most converted-to-target among stage counts whose converted audio is closer (mel) to the "
                     "source's words than to the unrelated target utterance in at least 80 % of pairs",
        "seconds": round(time.perf_counter() - t_start, 1), "classifier_seconds": round(t_clf, 1),
        "threads": args.threads,
    }


def choose_stages(per_stage: dict) -> int:
    """The stage count with the highest converted-to-target fraction among those whose words survive
    (converted closer to the source's own-voice decode than to the unrelated utterance in >= 80 % of pairs);
    the lowest stage count if none qualifies."""
    ok = [s for s, r in per_stage.items() if r["content"]["closer_to_source_fraction"] >= 0.8]
    if not ok:
        return min(per_stage)
    return max(ok, key=lambda s: (per_stage[s]["converted"]["target"], -s))


def fmt(v, digits: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def verdict(res: dict) -> list[str]:
    """Bullet lines saying, from the numbers, whether conversion worked and whether the words survived."""
    st, ps = res["stages"], res["per_stage"]
    chance = res["classifier"]["chance"]
    best = max(st, key=lambda s: ps[s]["converted"]["target"])
    tgt = ps[best]["converted"]["target"]
    ctrl = ps[best]["control_codec"]["target"]
    works = tgt >= max(5 * chance, ctrl + 0.1)
    pitch = [ps[s]["pitch"]["closer_to_target_fraction"] for s in st]
    pitch = [v for v in pitch if v is not None]
    words = min(ps[s]["content"]["closer_to_source_fraction"] for s in st)
    moved = max(ps[s]["content"]["mel_to_source_own_voice"] for s in st)
    base = min(ps[s]["content"]["mel_source_vs_unrelated"] for s in st)
    return [
        f"- Conversion {'works' if works else '**does not work**'} by this classifier: at best ({best} stages) "
        f"{tgt:.0%} of the pairs are classified as the target (the ordinary decode of the same pairs: {ctrl:.0%}; "
        f"chance {chance:.1%}).",
        f"- Pitch: the converted audio's median F0 is closer to the target's than to the source's in "
        + (f"{min(pitch):.0%}..{max(pitch):.0%}" if pitch else "-") + " of the pairs with a pitch gap "
        "(half would be a coin toss; the voice's pitch stays the source's where this is low).",
        f"- Words: the converted audio is closer to the source's words than to the unrelated utterance in at least "
        f"{words:.0%} of pairs at every stage count; its mel distance to the source's own-voice decode is at most "
        f"{moved:.2f}, against {base:.2f} between two unrelated utterances"
        + (": the words survive because the output hardly changed." if not works and moved < 0.25 * base else "."),
    ]


def markdown(res: dict) -> str:
    c = res["classifier"]
    st = res["stages"]
    lines = [
        "# Speaker conversion (issue 11: a report, not a gate)",
        "",
        f"`{res['command']}`; speaker decoder `{res['speaker_decoder']}` on `{res['base_model']}`; "
        f"{res['speakers_in_data']} training speakers (one utterance each); {len(res['sources'])} source x "
        f"{len(res['targets'])} target speakers, half F and half M; {res['seconds']:.0f} s, {res['threads']} thread(s).",
        "",
        "## 1. What the speaker classifier can tell apart",
        "",
        f"{c['features']}; {c['model']}; trained on {c['train_windows']} {c['window_s']:g} s windows: {c['train_on']}. "
        f"Tested on {c['test_on']}. Chance: {c['chance']:.3f}.",
        "",
        "| test audio | " + " | ".join(f"{s} st" for s in st) + " |",
        "|---|" + "---:|" * len(st),
        f"| original (no coding) | {fmt(c['accuracy_original'])} " + "| " * (len(st) - 1) + "|",
        "| ordinary codec decode | " + " | ".join(fmt(c["accuracy_codec"][s]) for s in st) + " |",
        "| speaker decoder, true speaker (sanity) | "
        + " | ".join(fmt(c["accuracy_speaker_decoder_true_speaker"][s]) for s in st) + " |",
        "",
        "## 2. Conversion: what the classifier says the output is",
        "",
        "Fractions of (source, target) pairs classified as the target / the source / another speaker.",
        "",
        "| stages (raw kbps) | converted: target / source / other | cross-sex: target | same-sex: target "
        "| control (ordinary decode): target / source / other |",
        "|---|---|---:|---:|---|",
    ]
    for s in st:
        r = res["per_stage"][s]
        cv, ct = r["converted"], r["control_codec"]
        lines.append(f"| {s} ({r['kbps_raw']:.2f}) | {fmt(cv['target'])} / {fmt(cv['source'])} / {fmt(cv['other'])} "
                     f"| {fmt(r['converted_cross_sex']['target'])} | {fmt(r['converted_same_sex']['target'])} "
                     f"| {fmt(ct['target'])} / {fmt(ct['source'])} / {fmt(ct['other'])} |")
    lines += [
        "",
        "## 3. Do the words survive? 4. Does the pitch move?",
        "",
        "Mel distance (lower is closer) and STOI of the converted audio against the source segment decoded in its "
        "own voice (same words) and against an unrelated utterance of the target decoded in the target's voice "
        "(same voice, other words); `source vs unrelated` is the distance of those two references. Pitch: pairs "
        "whose speakers' median F0 differ by >= 2 semitones; the converted audio's median F0 against each.",
        "",
        "| stages | mel to source words | mel to unrelated target utt. | source vs unrelated | closer to source "
        "| STOI to source / to unrelated | F0 closer to target | semitones to target / to source |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for s in st:
        ct, p = res["per_stage"][s]["content"], res["per_stage"][s]["pitch"]
        lines.append(f"| {s} | {fmt(ct['mel_to_source_own_voice'])} | {fmt(ct['mel_to_unrelated_target_utterance'])} "
                     f"| {fmt(ct['mel_source_vs_unrelated'])} | {fmt(ct['closer_to_source_fraction'])} "
                     f"| {fmt(ct['stoi_to_source_own_voice'])} / {fmt(ct['stoi_to_unrelated_target_utterance'])} "
                     f"| {fmt(p['closer_to_target_fraction'])} ({p['pairs']}) "
                     f"| {fmt(p['median_semitones_to_target'], 1)} / {fmt(p['median_semitones_to_source'], 1)} |")
    lines += [
        "",
        f"**Best stage count: {res['best_stages']}** ({res['best_rule']}); `vqcodec convert` decodes this many "
        "stages by default.",
        "",
        "## Verdict",
        "",
        *verdict(res),
        "",
        "## What this check can and cannot show",
        "",
        "- The training set holds **one utterance per speaker**. The classifier's classes are therefore "
        "utterances as much as voices: microphone, room, level, noise floor and the book's reading style are "
        "all constant within a class. A classifier that names the right speaker on a held-out segment may be "
        "recognising the recording channel; so may a converted output classified as the target. Classifier "
        "hits on the conversion mean \"sounds like the target's recording\", not \"sounds like the target's "
        "voice\".",
        "- The speaker embedding was learned from the same single utterance, so it too can hold channel as much "
        "as voice; nothing here separates them. The F0 column is the one voice cue that a channel cannot supply "
        "(a microphone does not move pitch), and it is only the median, not intonation or timbre.",
        "- The held-out segments are the last 20 % of the same recordings the decoder was trained on: same "
        "channel, same session. Speakers outside the 251 cannot be targets at all, and no other corpus is "
        "tested.",
        "- No listening test: naturalness and identity were not judged by people. Mel distance and STOI compare "
        "frame by frame and are crude for \"are the words the same\"; no speech recogniser was run.",
        "- Pairs and segments are few (one held-out segment per source speaker); fractions move by several "
        "points between runs with other sources or targets.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help="The speaker decoder's training folder (LibriSpeech train-clean-100, one utterance each).")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "audio")
    ap.add_argument("--speaker-weights", default=None, help="A speaker decoder file (default: the installed one).")
    ap.add_argument("--sources", type=int, default=20)
    ap.add_argument("--targets", type=int, default=6)
    ap.add_argument("--stages", default="1,2,3,4,6,8,16", help="Comma list of stage counts.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="A smoke run: 4 sources, 2 targets, stages 1,2.")
    args = ap.parse_args(argv)
    args.stages = [int(v) for v in str(args.stages).split(",")]
    if args.quick:
        args.sources, args.targets, args.stages = min(args.sources, 4), min(args.targets, 2), [1, 2]
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no such folder; pass --data with the speaker decoder's training folder")
    res = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speaker_conversion.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / "speaker_conversion.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    sys.exit(main())
