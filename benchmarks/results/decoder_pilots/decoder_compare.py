"""Print each decoder pilot's validation against the shipped decoder (step 0), dB; CPU hours from the log."""
import json, sys
base = json.load(open('/root/vqcodec-runs/decoder_cache/val_step0.json'))['val']
keys = ["q6", "q14", "q20", "q22", "q26", "q30", "q34", "q36", "q40", "q46", "level1", "level2", "level3", "level4", "level5", "vq1", "vq2", "codec_mean"]
print("run step cpu_h " + " ".join(keys))
print("step0 0 0 " + " ".join(f"{base[k]:.2f}" for k in keys))
for run in sys.argv[1:]:
    for l in open(f'/root/vqcodec-runs/{run}/log.jsonl'):
        d = json.loads(l)
        if 'val' in d:
            v = d['val']
            print(run, d['step'], round(d['cpu_s'] / 3600, 2), " ".join(f"{v[k]-base[k]:+.3f}" for k in keys))
