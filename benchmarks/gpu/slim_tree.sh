#!/usr/bin/env bash
# Fit the working tree to the device tool: a `run` call sends the whole working tree (tracked files, untracked files
# git does not ignore) together with the carried paths, at most 64 MiB. The tracked tree alone is over that (every
# release's shipped weights, Kodak, benchmark results), so before a GPU training call leave out of the working tree
# what the call does not need, with git's sparse checkout (nothing is deleted from git; `off` brings it all back):
#
#   bash benchmarks/gpu/slim_tree.sh on     # keep code, configs and the default image components only
#   bash benchmarks/gpu/slim_tree.sh size   # MiB that would travel: files present + gpu_pack/ (must be <= 64)
#   run(command="bash benchmarks/gpu/train_image_decoder_on_device.sh", carry=["gpu_pack"], timeout_s=600)
#   bash benchmarks/gpu/slim_tree.sh off    # the whole tree again (do this before anything else)
#
# `on` refuses a tree with uncommitted changes to tracked files (sparse checkout would keep or lose them). While it is
# on, only the image model, prior, refinement and decoder named as defaults in codec/weights/MANIFEST.json are
# present: tests, benchmarks that read data/ and audio coding do not work, and runs started from this checkout must
# not load other weights. Pack the photos to fit what is left (`size` says how much): pack_photos.py --max-mib N.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

weights_kept() {  # the default image components' files, from the manifest
    python3 - <<'EOF'
import json
m = json.load(open("codec/weights/MANIFEST.json"))
for c in m["components"]:
    if c["modality"] == "image" and c.get("default"):
        print("/codec/weights/" + c["file"])
EOF
}

travelling_mib() {  # tracked files present in the working tree + untracked files not ignored + gpu_pack/
    { git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null || true
      [ -d gpu_pack ] && find gpu_pack -type f -printf '%s\n'; } | awk '{s += $1} END {printf "%.1f\n", s / 1048576}'
}

case "${1:-}" in
on)
    git diff --quiet && git diff --cached --quiet \
        || { echo "slim_tree: commit or stash your changes first (sparse checkout acts on the working tree)" >&2; exit 1; }
    mapfile -t kept < <(weights_kept)
    git sparse-checkout set --no-cone '/*' '!/data/' '!/benchmarks/results/' '!/tests/data/' \
        '!/codec/weights/*.safetensors' "${kept[@]}"
    echo "slim_tree: on; kept weights: ${kept[*]}; $(travelling_mib) MiB would travel (with gpu_pack/)"
    ;;
off)
    git sparse-checkout disable
    echo "slim_tree: off (the whole tree is back); $(travelling_mib) MiB in the working tree and gpu_pack/"
    ;;
size)
    echo "$(travelling_mib) MiB would travel (tracked files present, untracked not ignored, gpu_pack/); limit 64"
    ;;
*)
    echo "usage: bash benchmarks/gpu/slim_tree.sh on|off|size" >&2
    exit 2
    ;;
esac
