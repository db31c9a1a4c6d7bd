"""benchmarks/gpu/slim_tree.sh: the working tree shrinks to what a GPU training call reads (the device tool sends at
most 64 MiB with the carried photos) and comes back whole."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs git and a checkout")
def test_slim_tree_keeps_the_default_image_weights_and_comes_back(tmp_path):
    clone = tmp_path / "clone"
    _git("clone", "-q", str(ROOT), str(clone), cwd=tmp_path)
    script = clone / "benchmarks/gpu/slim_tree.sh"
    shutil.copy(ROOT / "benchmarks/gpu/slim_tree.sh", script)  # this checkout's script, committed or not
    _git("add", "benchmarks/gpu/slim_tree.sh", cwd=clone)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "script", "--allow-empty", cwd=clone)
    tracked = set(_git("ls-files", cwd=clone).split("\n")) - {""}

    def run(arg):
        return subprocess.run(["bash", str(script), arg], cwd=clone, capture_output=True, text=True)

    on = run("on")
    assert on.returncode == 0, on.stderr
    manifest = json.loads((clone / "codec/weights/MANIFEST.json").read_text())
    kept = {c["file"] for c in manifest["components"] if c["modality"] == "image" and c.get("default")}
    present = {p.name for p in (clone / "codec/weights").glob("*.safetensors")}
    assert present == kept and {"image_vqvae_v4.safetensors"} <= kept
    assert not (clone / "data").exists() and not (clone / "benchmarks/results").exists()
    assert (clone / "codec/image/codec.py").is_file() and (clone / "benchmarks/gpu/pack_photos.py").is_file()
    size = float(run("size").stdout.split()[0])
    assert size < 25, run("size").stdout  # MiB: leaves >= 39 MiB for the packed photos
    (clone / "codec/image/codec.py").write_text("changed")  # `on` refuses uncommitted changes
    assert "commit or stash" in run("on").stderr
    _git("checkout", "--", "codec/image/codec.py", cwd=clone)
    off = run("off")
    assert off.returncode == 0, off.stderr
    assert all((clone / f).is_file() for f in tracked)
    assert _git("status", "--porcelain", cwd=clone) == ""
