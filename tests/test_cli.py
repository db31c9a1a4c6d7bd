"""The `vqcodec` command: round trips, no overwriting, stdin/stdout, exit codes and one-line errors.
Runs the real console entry point in a subprocess, on the tiny test model ($VQCODEC_WEIGHTS_DIR)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


@pytest.fixture()
def run(tiny_weights, tmp_path):
    env = {**os.environ, "VQCODEC_WEIGHTS_DIR": str(tiny_weights), "OMP_NUM_THREADS": "1"}

    def _run(*args, stdin: bytes | None = None):
        return subprocess.run([sys.executable, "-m", "vqcodec.cli.main", *args], cwd=tmp_path, env=env,
                              input=stdin, capture_output=True, timeout=300)

    return _run


@pytest.fixture()
def png(tmp_path, make_image):
    path = tmp_path / "in.png"
    Image.fromarray(make_image(40, 56, 1)).save(path)
    return path


def _one_line_error(proc) -> str:
    err = proc.stderr.decode().strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_encode_decode_info(run, png, tmp_path):
    p = run("encode", str(png), "-o", "a.vq", "-q", "100", "--verify")
    assert p.returncode == 0, p.stderr.decode()
    assert "verified" in p.stderr.decode()
    p = run("decode", "a.vq", "-o", "a.png")
    assert p.returncode == 0, p.stderr.decode()
    out = np.asarray(Image.open(tmp_path / "a.png"))
    assert out.shape == (40, 56, 3)
    p = run("info", "a.vq", "--json")
    info = json.loads(p.stdout)
    assert 1 <= info["layers"] <= 3 and info["width"] == 56 and info["height"] == 40
    assert info["modality"] == "image" and {m["role"] for m in info["models"]} == {"vqvae", "prior"}
    assert info["file_bytes"] == (tmp_path / "a.vq").stat().st_size


def test_never_overwrites_without_force(run, png, tmp_path):
    (tmp_path / "b.vq").write_bytes(b"precious")
    p = run("encode", str(png), "-o", "b.vq")
    assert p.returncode == 1
    assert "exists" in _one_line_error(p) and "--force" in p.stderr.decode()
    assert (tmp_path / "b.vq").read_bytes() == b"precious"
    p = run("encode", str(png), "-o", "b.vq", "--force")
    assert p.returncode == 0 and (tmp_path / "b.vq").read_bytes()[:4] == b"\x89VQC"
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".part")]


def test_outputs_get_the_usual_file_mode(run, png, tmp_path):
    """Atomic writes go through mkstemp (0600); the result must still be readable like any new file."""
    mask = os.umask(0)
    os.umask(mask)
    assert run("encode", str(png), "-o", "m.vq").returncode == 0
    assert run("decode", "m.vq", "-o", "m.png").returncode == 0
    for name in ("m.vq", "m.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask
    os.chmod(tmp_path / "m.vq", 0o640)  # --force keeps the mode of the file it replaces
    assert run("encode", str(png), "-o", "m.vq", "--force").returncode == 0
    assert (tmp_path / "m.vq").stat().st_mode & 0o777 == 0o640


def test_stdin_stdout(run, png, tmp_path):
    p = run("encode", "-", "-o", "-", stdin=png.read_bytes())
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout[:4] == b"\x89VQC"
    d = run("decode", "-", "-o", "-", stdin=p.stdout)
    assert d.returncode == 0, d.stderr.decode()
    assert d.stdout[:8] == b"\x89PNG\r\n\x1a\n"


def test_decode_fewer_layers(run, png, tmp_path):
    assert run("encode", str(png), "-o", "c.vq").returncode == 0
    p = run("decode", "c.vq", "-o", "c1.png", "--layers", "1")
    assert p.returncode == 0, p.stderr.decode()
    assert run("decode", "c.vq", "-o", "c8.png").returncode == 0
    assert (tmp_path / "c1.png").read_bytes() != (tmp_path / "c8.png").read_bytes()
    # -q is the quality scale of encoding; decoding fewer layers says so by name
    p = run("decode", "c.vq", "-o", "c2.png", "-q", "1")
    assert p.returncode == 2 and "usage error" in _one_line_error(p)


@pytest.mark.parametrize("content", [b"", b"not a vq file at all", b"\x89VQC" + bytes(60)])
def test_bad_vq_file_is_exit_1_one_line(run, tmp_path, content):
    (tmp_path / "bad.vq").write_bytes(content)
    for args in (("decode", "bad.vq", "-o", "x.png"), ("info", "bad.vq")):
        p = run(*args)
        assert p.returncode == 1
        assert _one_line_error(p).startswith("vqcodec: error:")
    assert not (tmp_path / "x.png").exists()


def test_bad_image_and_missing_file(run, tmp_path):
    (tmp_path / "junk.png").write_bytes(b"\x00" * 100)
    p = run("encode", "junk.png", "-o", "j.vq")
    assert p.returncode == 1 and "not a readable image" in _one_line_error(p)
    p = run("encode", "missing.png", "-o", "m.vq")
    assert p.returncode == 1 and "no such file" in _one_line_error(p)


def test_usage_errors_are_exit_2(run, png):
    for args in (("encode", str(png)), ("encode", str(png), "-o", "x.vq", "-q", "101"),
                 ("encode", str(png), "-o", "x.vq", "-q", "5", "--size", "100"), ("encode", str(png), "-o", "x.vq",
                                                                                 "--effort", "4"), ("frobnicate",)):
        p = run(*args)
        assert p.returncode == 2, (args, p.stderr.decode())
        assert "usage error" in _one_line_error(p)


def test_alpha_policy(run, tmp_path, make_image):
    rgba = np.dstack([make_image(16, 16), np.full((16, 16), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    assert run("encode", "alpha.png", "-o", "k.vq").returncode == 0  # kept: coded losslessly
    assert run("decode", "k.vq", "-o", "k.png").returncode == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "k.png"))[..., 3], rgba[..., 3])
    p = run("encode", "alpha.png", "-o", "a.vq", "--alpha", "error")
    assert p.returncode == 1 and "alpha" in _one_line_error(p)
    assert run("encode", "alpha.png", "-o", "a.vq", "--alpha", "white").returncode == 0


def test_sample(run, tmp_path):
    p = run("sample", "-o", "s.png", "--seed", "1", "--size", "32x24")
    assert p.returncode == 0, p.stderr.decode()
    assert Image.open(tmp_path / "s.png").size == (32, 24)
    q = run("sample", "-o", "t.png", "--seed", "1", "--size", "32x24")
    assert q.returncode == 0, q.stderr.decode()
    assert (tmp_path / "s.png").read_bytes() == (tmp_path / "t.png").read_bytes()
