"""Where do v1's words go: own voice (LJ reference, own pitch range) with the quantized content code vs the
encoder's unquantized latents, 8 LJSpeech clips, pocketsphinx WER."""
import sys, numpy as np, soundfile as sf, soxr, torch, torch.nn.functional as F
from pathlib import Path
sys.path.insert(0, "/work/main/benchmarks")
import conversion_eval as ce
from vqcodec.audio.converter import Converter
from vqcodec.audio.pitch import pitch_track
torch.set_num_threads(1)
model_path = sys.argv[1] if len(sys.argv) > 1 else "/work/main/codec/weights/audio_conversion_v1.safetensors"
conv = Converter.load(model_path)
m = conv.model
ws = Path("/work/shared/data/speech/ljspeech")
tr = ce.read_transcripts(ws)
clips = sorted(tr)[:8]
asr = ce._pocketsphinx()
tot = {}
for i, p in enumerate(clips):
    x, rate = sf.read(p, dtype="float32")
    x16 = torch.from_numpy(soxr.resample(x, rate, 16000).astype(np.float32))
    ref, rr = sf.read(clips[(i + 1) % len(clips)], dtype="float32")
    tgt = conv.reference_target(ref, rr)
    ch, ctrl = m.cfg.content_hop, m.cfg.harmonic.ctrl_hop
    n = -(-len(x16) // ch); xp = F.pad(x16, (0, n * ch - len(x16)))
    f0, v = pitch_track(xp, m.cfg.pitch); v = v.float()[None]; f0 = f0[None]
    with torch.no_grad():
        z = m.encoder(xp[None]).float()
        zq = m.content_lookup(m.encode_content(xp[None]))
        emb = tgt.embedding[None]
        outs = {"original": x16.numpy()}
        for name, zz in (("own voice, quantized", zq), ("own voice, unquantized", z)):
            outs[name] = m.decoder(zz, emb, f0, v).clamp(-1, 1)[0].numpy()
    for k, y in outs.items():
        e, nw = ce.word_errors(tr[p], asr(y))
        a = tot.setdefault(k, [0, 0]); a[0] += e; a[1] += nw
for k, (e, nw) in tot.items():
    print(f"{k}: WER {100 * e / nw:.1f} % ({e}/{nw})", flush=True)
