"""WER diagnostic of audio-conversion-v1 (session 15): 8 LJSpeech clips through the conversion model in their own voice
(reference: the next LJ clip), to table speaker ls1088, and through the codec at quality 6; pocketsphinx WER. Run: python wer_diagnostic.py"""
import sys, numpy as np, soundfile as sf, soxr
from pathlib import Path
sys.path.insert(0, "/work/main/benchmarks")
import conversion_eval as ce
import vqcodec
ws = Path("/work/shared/data/speech/ljspeech")
tr = ce.read_transcripts(ws)
clips = sorted(tr)[:8]
asr = ce._pocketsphinx()
def wer(y, rate):
    y16 = soxr.resample(y.astype(np.float32), rate, 16000) if rate != 16000 else y
    return asr(y16)
tot = {}
for i, p in enumerate(clips):
    x, rate = sf.read(p, dtype="float32")
    ref = clips[(i + 1) % len(clips)]
    outs = {"original": x,
            "own voice (LJ reference)": vqcodec.convert_speaker(x, ref, sample_rate=rate)[0][:, 0],
            "to ls1088": vqcodec.convert_speaker(x, "ls1088", sample_rate=rate)[0][:, 0],
            "codec q6": vqcodec.decode(vqcodec.encode_audio(x, rate, quality=6))[0][:, 0]}
    for k, y in outs.items():
        e, n = ce.word_errors(tr[p], asr(soxr.resample(y, rate, 16000)))
        a = tot.setdefault(k, [0, 0]); a[0] += e; a[1] += n
for k, (e, n) in tot.items():
    print(f"{k}: WER {100 * e / n:.1f} % ({e}/{n})")
