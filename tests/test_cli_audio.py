"""`vqcodec` on audio files: encode by input type, decode/info by the file's modality, formats by extension."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf


@pytest.fixture()
def run(tiny_all_weights, tmp_path):
    env = {**os.environ, "VQCODEC_WEIGHTS_DIR": str(tiny_all_weights), "OMP_NUM_THREADS": "1"}

    def _run(*args, stdin: bytes | None = None):
        return subprocess.run([sys.executable, "-m", "vqcodec.cli.main", *args], cwd=tmp_path, env=env,
                              input=stdin, capture_output=True, timeout=300)

    return _run


@pytest.fixture()
def wav(tmp_path, make_audio):
    path = tmp_path / "in.wav"
    sf.write(path, make_audio(0.6, 22050, 2, seed=2), 22050, subtype="PCM_16")
    return path


def test_wav_round_trip_and_info(run, wav, tmp_path):
    p = run("encode", str(wav), "-o", "a.vq", "--verify")
    assert p.returncode == 0, p.stderr.decode()
    assert "kbit/s" in p.stderr.decode() and "verified" in p.stderr.decode()
    for out in ("a.wav", "a.flac", "a.ogg"):
        p = run("decode", "a.vq", "-o", out)
        assert p.returncode == 0, p.stderr.decode()
        info = sf.info(tmp_path / out)
        assert (info.samplerate, info.channels) == (22050, 2)
        if out != "a.ogg":  # Vorbis may pad its last page
            assert info.frames == sf.info(wav).frames
    info = json.loads(run("info", "a.vq", "--json").stdout)
    assert info["modality"] == "audio" and info["sample_rate"] == 22050 and info["channels"] == 2
    assert info["num_samples"] == sf.info(wav).frames and info["kbps"] > 0
    assert "audio" in run("info", "a.vq").stdout.decode()


def test_flac_in_and_stdout_wav(run, tmp_path, make_audio):
    sf.write(tmp_path / "in.flac", make_audio(0.4, 16000, 1, seed=3), 16000)
    assert run("encode", "in.flac", "-o", "b.vq", "-q", "2").returncode == 0
    p = run("decode", "b.vq", "-o", "-")
    assert p.returncode == 0 and p.stdout[:4] == b"RIFF"
    p = run("decode", "b.vq", "-o", "b1.wav", "--layers", "1")
    assert p.returncode == 0, p.stderr.decode()


def test_bad_audio_is_one_line(run, tmp_path):
    sf.write(tmp_path / "nan.wav", np.full((100, 1), np.nan, np.float32), 16000, subtype="FLOAT")
    p = run("encode", "nan.wav", "-o", "n.vq")
    err = p.stderr.decode().strip()
    assert p.returncode == 1 and "NaN" in err and "\n" not in err, err
    assert not (tmp_path / "n.vq").exists()
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really")
    p = run("encode", "junk.wav", "-o", "j.vq")
    assert p.returncode == 1 and "not a readable audio file" in p.stderr.decode()
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1), np.float32), 16000)
    p = run("encode", "empty.wav", "-o", "e.vq")
    assert p.returncode == 1 and "empty" in p.stderr.decode()
    p = run("encode", str(tmp_path / "nan.wav"), "-o", "x.vq", "-q", "9")
    assert p.returncode == 2


def test_sample_audio_is_seeded(run, tmp_path):
    assert run("sample", "-o", "s.wav", "--seconds", "0.5", "--seed", "3").returncode == 0
    assert run("sample", "-o", "t.wav", "--seconds", "0.5", "--seed", "3").returncode == 0
    assert (tmp_path / "s.wav").read_bytes() == (tmp_path / "t.wav").read_bytes()
    info = sf.info(tmp_path / "s.wav")
    assert info.samplerate == 16000 and abs(info.frames - 8000) <= 80


def test_streamed_decode_output_equals_api_decode(run, tmp_path, make_audio, tiny_all_weights, use_weights):
    """`vqcodec decode` streams the samples into the output file (and a WAV to stdout) block by block; what
    it writes equals vqcodec.decode's samples written whole, 16-bit sample for sample."""
    import io

    import vqcodec

    x = make_audio(1.3, 44100, 2, seed=5)
    use_weights(tiny_all_weights)
    data = vqcodec.encode_audio(x, 44100, quality=2)
    (tmp_path / "c.vq").write_bytes(data)
    y, rate = vqcodec.decode(data)

    def written_whole(fmt: str) -> np.ndarray:  # y written in one piece as the CLI's format writes it
        whole = io.BytesIO()
        sf.write(whole, np.clip(y, -1, 1), rate, format=fmt, subtype="PCM_16")
        return sf.read(io.BytesIO(whole.getvalue()), dtype="int16", always_2d=True)[0]

    for out, fmt in (("c.wav", "WAV"), ("c.flac", "FLAC")):
        p = run("decode", "c.vq", "-o", out)
        assert p.returncode == 0, p.stderr.decode()
        got, r = sf.read(tmp_path / out, dtype="int16", always_2d=True)
        assert r == rate and np.array_equal(got, written_whole(fmt)), out
    expected = written_whole("WAV")
    p = run("decode", "c.vq", "-o", "-")
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout[:4] == b"RIFF" and len(p.stdout) == 44 + expected.size * 2
    got, r = sf.read(io.BytesIO(p.stdout), dtype="int16", always_2d=True)
    assert r == rate and np.array_equal(got, expected)
    assert not list(tmp_path.glob(".*.part"))  # the atomic writer left no temporary file
