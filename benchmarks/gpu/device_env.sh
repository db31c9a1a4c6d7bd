# Shared by benchmarks/gpu/train_image_on_device.sh and train_image_decoder_on_device.sh: sourced, not run.
#
# vq_setup      checks python + torch (and the GPU when VQ_DEVICE is cuda), prints nvidia-smi, makes constriction
#               importable from gpu_pack/wheels/*.whl if it is not, and installs this checkout (pip install -e .
#               --no-deps --no-build-isolation) if `import vqcodec` fails or finds another copy (VQ_INSTALL=0: never).
# vq_run_train  runs `vqcodec -v train "$@"` under a deadline: SIGTERM at VQ_TIME_LIMIT_S seconds after the script
#               started (the loop then stops with a checkpoint), SIGKILL 30 s later.
# vq_main       the whole job: OUT/run created, setup + training logged to OUT/run/train.log, then collect_run.py
#               fits OUT/run to what the device tool brings back (what does not fit goes to VQ_KEEP_DIR).
#
# Environment: OUT (required), PYTHON (python3), VQ_DEVICE (cuda), VQ_DATA (gpu_pack/photos), VQ_THREADS,
# VQ_MAX_MINUTES, VQ_TIME_LIMIT_S (540), VQ_KEEP_DIR (/tmp/vq_device_run), VQ_INSTALL (1).

PY=${PYTHON:-python3}
VQ_DEVICE=${VQ_DEVICE:-cuda}
VQ_DATA=${VQ_DATA:-gpu_pack/photos}
VQ_TIME_LIMIT_S=${VQ_TIME_LIMIT_S:-540}
VQ_KEEP_DIR=${VQ_KEEP_DIR:-/tmp/vq_device_run}
VQ_WHEELS=${VQ_WHEELS:-gpu_pack/wheels}
VQ_SITE=${VQ_SITE:-/tmp/vq_site}
VQ_START_S=${VQ_START_S:-$(date +%s)}

vq_fail() {
    echo "$(basename "$0"): error: $*" >&2
    exit 1
}

vq_setup() {
    [ -f pyproject.toml ] && [ -d codec ] || vq_fail "run me from the repository root (no pyproject.toml, codec/ here)"
    [ -d "$VQ_DATA" ] || vq_fail "no photo folder $VQ_DATA: pack it here first (python benchmarks/gpu/pack_photos.py" \
        "--data ../shared/data/photos --out gpu_pack/photos --max-mib N) and carry gpu_pack, or set VQ_DATA"
    "$PY" - "$VQ_DEVICE" <<'EOF' || vq_fail "python/torch check failed (above)"
import sys
try:
    import torch
except ImportError:
    sys.exit(f"{sys.executable} has no torch: set PYTHON to a python with torch")
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"python {sys.version.split()[0]} ({sys.executable}); torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"GPU: {gpu}")
if sys.argv[1].startswith("cuda") and not torch.cuda.is_available():
    sys.exit("VQ_DEVICE is cuda but torch sees no GPU: run on the GPU machine, or set VQ_DEVICE=cpu for a smoke test")
EOF
    if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi; else echo "(no nvidia-smi here)"; fi
    if ! "$PY" -c "import constriction" 2>/dev/null; then
        ls "$VQ_WHEELS"/*.whl >/dev/null 2>&1 || vq_fail "constriction is not installed and $VQ_WHEELS holds no" \
            "wheel: download it here (see the header of benchmarks/gpu/train_image_on_device.sh) and carry gpu_pack"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$VQ_SITE" \
            "$VQ_WHEELS"/*.whl || vq_fail "could not install the wheels of $VQ_WHEELS"
        export PYTHONPATH="$VQ_SITE${PYTHONPATH:+:$PYTHONPATH}"
    fi
    local here
    here=$("$PY" -c "import vqcodec, pathlib; print(pathlib.Path(vqcodec.__file__).resolve().parent)" 2>/dev/null)
    if [ "$here" != "$(pwd -P)/codec" ]; then
        if [ "${VQ_INSTALL:-1}" = 0 ]; then
            echo "warning: vqcodec imports from '${here:-nowhere}', not this checkout (VQ_INSTALL=0: not installing)"
        else
            echo "installing this checkout (vqcodec imports from '${here:-nowhere}')"
            "$PY" -m pip install -q --no-deps --no-build-isolation -e . || vq_fail "pip install -e . failed (above)"
        fi
    fi
}

vq_run_train() {
    local left=$((VQ_START_S + VQ_TIME_LIMIT_S - $(date +%s)))
    [ "$left" -gt 30 ] || vq_fail "only ${left} s left of VQ_TIME_LIMIT_S=$VQ_TIME_LIMIT_S before training starts"
    echo "+ vqcodec -v train $* (SIGTERM in ${left} s)"
    PYTHONUNBUFFERED=1 timeout -s TERM -k 30 "$left" "$PY" -m vqcodec.cli.main -v train "$@"
    local rc=$?
    [ "$rc" -eq 124 ] && echo "stopped by the ${VQ_TIME_LIMIT_S} s deadline (SIGTERM: the run wrote a checkpoint)"
    return "$rc"
}

vq_main() {
    : "${OUT:?set OUT to the folder whose files come back (the device tool sets it)}"
    mkdir -p "$OUT/run" || exit 1
    set -o pipefail
    { vq_setup && vq_run_train "$@"; } 2>&1 | tee "$OUT/run/train.log"
    local rc=$?
    "$PY" benchmarks/gpu/collect_run.py pack "$OUT/run" --keep-dir "$VQ_KEEP_DIR" || rc=1
    echo "exit status $rc; the run's files are in $OUT/run (RETURNED.json: join them with" \
        "python benchmarks/gpu/collect_run.py join FOLDER --to DIR)"
    return "$rc"
}
