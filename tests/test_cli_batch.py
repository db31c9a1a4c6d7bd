"""`vqcodec encode/decode` on many files (cli/batch.py): output names, per-file failures, exit
status, -j independence, no overwriting. Runs the real console entry point on the tiny test models."""
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from PIL import Image


@pytest.fixture()
def run(tiny_all_weights, tmp_path):
    env = {**os.environ, "VQCODEC_WEIGHTS_DIR": str(tiny_all_weights), "OMP_NUM_THREADS": "1"}

    def _run(*args):
        return subprocess.run([sys.executable, "-m", "vqcodec.cli.main", *args], cwd=tmp_path, env=env,
                              capture_output=True, timeout=300)

    return _run


@pytest.fixture()
def inputs(tmp_path, make_image, make_audio):
    """Three images (PNG, JPEG, BMP) and one WAV in tmp_path/in."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(make_image(24, 32, 1)).save(folder / "a.png")
    Image.fromarray(make_image(16, 40, 2)).save(folder / "b.jpg")
    Image.fromarray(make_image(32, 24, 3)).save(folder / "c.bmp")
    sf.write(folder / "d.wav", make_audio(0.3, 16000, 1, seed=1), 16000, subtype="PCM_16")
    return sorted(str(p) for p in folder.iterdir())


def _errors(proc) -> list[str]:
    return [line for line in proc.stderr.decode().splitlines() if line.startswith("vqcodec: error:")]


def test_encode_and_decode_many_files(run, inputs, tmp_path):
    p = run("encode", *inputs, "-o", "vq/", "-q", "2", "-j", "2")
    assert p.returncode == 0, p.stderr.decode()
    assert sorted(os.listdir(tmp_path / "vq")) == ["a.vq", "b.vq", "c.vq", "d.vq"]
    assert "encoded 4 of 4 files" in p.stderr.decode()
    vq = sorted(str(f) for f in (tmp_path / "vq").iterdir())
    p = run("decode", *vq, "-o", "out/", "-j", "2")  # no such folder: the '/' says to create it (issue #24)
    assert p.returncode == 0, p.stderr.decode()
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.png", "c.png", "d.wav"]
    assert Image.open(tmp_path / "out" / "b.png").size == (40, 16)
    assert sf.info(tmp_path / "out" / "d.wav").frames == sf.info(inputs[3]).frames
    # one input into an existing folder is a batch too
    (tmp_path / "one").mkdir()
    p = run("encode", inputs[0], "-o", "one")
    assert p.returncode == 0, p.stderr.decode()
    assert os.listdir(tmp_path / "one") == ["a.vq"]


def test_one_broken_input_does_not_stop_the_rest(run, inputs, tmp_path):
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG not really")
    files = [*inputs[:2], str(tmp_path / "in" / "broken.png"), *inputs[2:], "missing.png"]
    p = run("encode", *files, "-o", "vq/", "-q", "1", "-j", "2")
    assert p.returncode == 1
    errors = _errors(p)
    assert any("broken.png: not a readable image" in e for e in errors), errors
    assert any("missing.png: no such file" in e for e in errors), errors
    assert any("2 of 6 files failed" in e for e in errors), errors
    assert sorted(os.listdir(tmp_path / "vq")) == ["a.vq", "b.vq", "c.vq", "d.vq"]
    (tmp_path / "vq" / "bad.vq").write_bytes(b"\x89VQC\x02 damaged")
    p = run("decode", str(tmp_path / "vq" / "a.vq"), str(tmp_path / "vq" / "bad.vq"), "-o", "out/")
    assert p.returncode == 1 and os.listdir(tmp_path / "out") == ["a.png"]
    assert any("bad.vq:" in e for e in _errors(p))


def test_outputs_do_not_depend_on_jobs(run, inputs, tmp_path):
    for j in ("1", "2"):
        p = run("encode", *inputs, "-o", f"j{j}/", "-q", "3", "-j", j)
        assert p.returncode == 0, p.stderr.decode()
        p = run("decode", *sorted(str(f) for f in (tmp_path / f"j{j}").glob("*.vq")), "-o", f"d{j}/", "-j", j)
        assert p.returncode == 0, p.stderr.decode()
    for name in ("a.vq", "b.vq", "c.vq", "d.vq", "a.png", "d.wav"):
        sub = "j" if name.endswith(".vq") else "d"
        assert (tmp_path / f"{sub}1" / name).read_bytes() == (tmp_path / f"{sub}2" / name).read_bytes(), name


def test_no_overwriting_without_force(run, inputs, tmp_path):
    (tmp_path / "vq").mkdir()
    (tmp_path / "vq" / "a.vq").write_bytes(b"keep me")
    p = run("encode", *inputs[:2], "-o", "vq/", "-q", "1")
    assert p.returncode == 1
    assert any("a.vq exists; pass --force" in e for e in _errors(p))
    assert (tmp_path / "vq" / "a.vq").read_bytes() == b"keep me"
    assert (tmp_path / "vq" / "b.vq").exists()
    p = run("encode", *inputs[:2], "-o", "vq/", "-q", "1", "-f")
    assert p.returncode == 0, p.stderr.decode()
    assert (tmp_path / "vq" / "a.vq").read_bytes()[:4] == b"\x89VQC"


def test_usage_errors(run, inputs, tmp_path):
    (tmp_path / "file.vq").write_bytes(b"x")
    p = run("encode", *inputs[:2], "-o", "file.vq")
    assert p.returncode == 2 and "output folder" in p.stderr.decode()
    p = run("encode", *inputs[:2], "-o", "-")
    assert p.returncode == 2 and "stdout takes one file" in p.stderr.decode() and not (tmp_path / "-").exists()
    p = run("encode", inputs[0], "-", "-o", "vq/")
    assert p.returncode == 2 and "stdin" in p.stderr.decode()
    p = run("encode", *inputs[:2], "-o", "vq/", "-j", "0")
    assert p.returncode == 2
    # two inputs with the same stem would write the same output: the second is refused, not overwritten
    Image.open(inputs[0]).save(tmp_path / "in" / "a.bmp")
    p = run("encode", inputs[0], str(tmp_path / "in" / "a.bmp"), "-o", "same/", "-q", "1")
    assert p.returncode == 1 and any("code it separately" in e for e in _errors(p))
    assert os.listdir(tmp_path / "same") == ["a.vq"]
