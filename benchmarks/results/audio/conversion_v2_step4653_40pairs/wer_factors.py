"""Issue #23 diagnostic: which part of a so762 target costs words? 8 LJSpeech clips converted to two so762 training
speakers with the embedding / pitch mapping varied one at a time; pocketsphinx WER (as conversion_eval).

    python wer_factors.py MODEL [LJSPEECH_FOLDER (default ../shared/data/speech/ljspeech beside the repository)]
"""
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[3]))  # benchmarks/
import conversion_eval as ce
from vqcodec.audio.conversion import load_conversion_model, pitch_stats
torch.set_num_threads(1)
m, _ = load_conversion_model(sys.argv[1])
m.eval()
targets = ["so762_0567", "so762_3023"]  # the two voices of 0.8.0's WER figure
ws = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE.parents[5] / "shared" / "data" / "speech" / "ljspeech"
tr = ce.read_transcripts(ws)
clips = sorted(tr)[:8]
asr = ce._pocketsphinx()
tot = {}
def add(k, p, y):
    e, nw = ce.word_errors(tr[p], asr(y.numpy()))
    a = tot.setdefault(k, [0, 0]); a[0] += e; a[1] += nw
for i, p in enumerate(clips):
    x, f0, v = ce.load_clip(p, m.cfg.pitch)
    sstats = torch.stack(pitch_stats(f0, v))
    rx, rf0, rv = ce.load_clip(clips[(i + 1) % len(clips)], m.cfg.pitch)
    own = m.embed_speaker(rx[None])[0]
    own_stats = torch.stack(pitch_stats(rf0, rv))
    with torch.no_grad():
        for t in targets:
            emb, ts = m.speaker(t)
            add("standard", p, m.convert(x[None], f0[None], v[None], t)[0])
            add("target mean, source std", p, m.convert(x[None], f0[None], v[None], emb, torch.stack([ts[0], sstats[1]]))[0])
            add("target emb, own pitch", p, m.convert(x[None], f0[None], v[None], emb, own_stats)[0])
            add("own emb, target pitch", p, m.convert(x[None], f0[None], v[None], own, ts)[0])
        add("own emb, own pitch (x2 weight)", p, m.convert(x[None], f0[None], v[None], own, own_stats)[0])
for t in targets:
    emb, ts = m.speaker(t); print(t, "log2 f0 mean/std", [round(float(a), 3) for a in ts])
for k, (e, nw) in tot.items():
    print(f"{k}: WER {100 * e / nw:.1f} % ({e}/{nw})", flush=True)
