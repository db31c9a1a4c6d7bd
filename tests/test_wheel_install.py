"""The built wheel installs into a fresh virtual environment and imports from outside the repo.

Guards the packaging: every folder of the package (codec/, bitstream/, kernels/, cli/) lands inside the one
import package `vqcodec`, with the shipped weights (every file MANIFEST.json lists, and not the float image
prior, which only training and benchmarks read from the repository) and FORMAT.md as package data.
"""
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def _dependency_dirs() -> list[str]:
    """Folders holding the runtime dependencies in the interpreter running the tests (not the repo)."""
    import constriction
    import safetensors
    import torch

    dirs = {str(Path(m.__file__).resolve().parents[1]) for m in (torch, constriction, safetensors)}
    return sorted(d for d in dirs if not Path(d).is_relative_to(REPO))  # a venv at /tmp/x-venv beside /tmp/x is not inside it


def _clone_like_copy(dest: Path) -> Path:
    """The repository's files as a fresh clone of the working tree holds them (tracked files, and untracked
    ones git does not ignore) copied to `dest`: a build there sees no stale build/ folder of the checkout."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def test_wheel_installs_and_imports_outside_repo(tmp_path):
    dist = tmp_path / "dist"
    source = _clone_like_copy(tmp_path / "src")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    wheels = list(dist.glob("vqcodec-*.whl"))
    assert len(wheels) == 1
    import zipfile

    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "vqcodec/weights/image_vqvae.safetensors" in names
    assert "vqcodec/weights/image_vqvae_v4.safetensors" in names
    assert "vqcodec/weights/image_decoder_v4_c1.safetensors" in names  # 0.7.0 files name it
    assert "vqcodec/weights/image_decoder_v4_c2.safetensors" in names
    assert not [n for n in names if n.endswith("_float.safetensors")], "the float priors are not shipped"
    env_dir = tmp_path / "venv"
    # An isolated venv that sees the dependencies of the environment running the tests, never those of
    # the base interpreter (a fresh machine's system Python has none of them). A .pth line appends this
    # environment's site-packages after the new venv's own, so the wheel installed there wins.
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    py = env_dir / "bin" / "python"
    new_site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    (new_site / "_test_runner_deps.pth").write_text("\n".join(_dependency_dirs()) + "\n")
    inst = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheels[0])],
                          capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-2000:]
    code = (
        "import vqcodec, vqcodec.kernels, vqcodec.image, vqcodec.bitstream, vqcodec.cli, pathlib;"
        "import vqcodec.image.codec as ic;"
        "assert 'site-packages' in vqcodec.__file__, vqcodec.__file__;"
        "assert pathlib.Path(vqcodec.bitstream.__file__).with_name('FORMAT.md').is_file();"
        "assert ic.DEFAULT_MODEL_PATH.is_file() and ic.DEFAULT_PRIOR_PATH.is_file();"
        "assert ic.DEFAULT_REFINEMENT_PATH.is_file() and ic.DEFAULT_DECODER_PATH.is_file();"
        "import json, vqcodec.weights.io as wio;"
        "listed = [c['file'] for c in json.loads((wio.WEIGHTS_DIR / 'MANIFEST.json').read_text())['components']];"
        "assert all((wio.WEIGHTS_DIR / f).is_file() for f in listed), listed;"
        "assert not (wio.WEIGHTS_DIR / 'image_prior_float.safetensors').exists(), 'float prior shipped';"
        "print(vqcodec.__version__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([str(py), "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    cli = subprocess.run([str(env_dir / "bin" / "vqcodec"), "--help"], cwd=tmp_path, capture_output=True,
                         text=True, env=env, timeout=300)
    assert cli.returncode == 0 and "encode" in cli.stdout
    # No top-level generic packages leak into site-packages.
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True).stdout.strip()
    for generic in ("cli", "codec", "image", "kernels", "bitstream", "training"):
        assert not (Path(site) / generic).exists(), f"{generic}/ leaked into site-packages"
