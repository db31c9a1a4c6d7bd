"""Fast commands need no model (issue #24, item 7): `vqcodec --help`, `vqcodec info FILE`, a subcommand's
`--help` and usage errors run without importing torch (only the work that needs a model imports it). The
test checks what is imported, not how long it takes (the machines running tests are shared)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

OLD_FILE = Path(__file__).parent / "data" / "release_v0.3.0" / "kodim23_crop_64x48_q5.vq"

PROBE = """
import sys
from vqcodec.cli.main import main
sys.argv = ["vqcodec", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    code = e.code
else:
    code = 0
print(f"\\nexit={code} torch={'torch' in sys.modules}", file=sys.stderr)
"""


def _probe(tmp_path, *args: str) -> tuple[int, bool, str]:
    p = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "VQCODEC_WEIGHTS_DIR": str(tmp_path)})
    last = p.stderr.strip().splitlines()[-1]
    code, torch = (part.split("=")[1] for part in last.split())
    return int(code) if code != "None" else 0, torch == "True", p.stdout + p.stderr


@pytest.mark.parametrize("args", [
    ("--help",),
    ("encode", "--help"),
    ("info", str(OLD_FILE)),
    ("info", "--json", str(OLD_FILE), str(OLD_FILE)),
    ("encode", "x.png", "-o", "-q", "50"),          # a usage error: exit 2
    ("encode", "x.png"),                             # missing -o: exit 2
    ("sample", "-o", "s.wav", "--dims", "8x8"),      # exit 2
], ids=["help", "encode-help", "info", "info-json", "usage-o", "usage-missing", "usage-sample"])
def test_commands_that_need_no_model_do_not_import_torch(tmp_path, args):
    code, torch, output = _probe(tmp_path, *args)
    assert code in (0, 2), output
    assert not torch, f"vqcodec {' '.join(args)} imported torch"


def test_the_probe_sees_torch_when_a_model_is_needed(tiny_weights, tmp_path, make_image):
    """The check can fail: a command that codes does import torch."""
    from PIL import Image

    Image.fromarray(make_image(16, 16, 0)).save(tmp_path / "x.png")
    p = subprocess.run([sys.executable, "-c", PROBE, "encode", "x.png", "-o", "x.vq"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "VQCODEC_WEIGHTS_DIR": str(tiny_weights), "OMP_NUM_THREADS": "1"})
    assert p.stderr.strip().splitlines()[-1] == "exit=0 torch=True", p.stderr


def test_import_vqcodec_does_not_import_torch_until_a_codec_is_needed():
    code = ("import sys, vqcodec\n"
            "from vqcodec import api, decode, inspect\n"
            "assert callable(decode) and vqcodec.api is api\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
