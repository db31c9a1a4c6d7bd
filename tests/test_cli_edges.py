"""The edges of the command line (issue #24, items 1, 2, 4, 5, 6, 8): `-o` read strictly, size targets that
cannot be met, unwritable destinations, image-only options with audio, `sample`'s options, `--layers` above a
file's count, the progress bar, `-v` after the subcommand, plurals, `info` on several files.
Runs the real console entry point in a subprocess, on the tiny test models ($VQCODEC_WEIGHTS_DIR)."""
import json
import os
import subprocess
import sys

import pytest
import soundfile as sf
from PIL import Image


@pytest.fixture()
def run(tiny_all_weights, tmp_path):
    env = {**os.environ, "VQCODEC_WEIGHTS_DIR": str(tiny_all_weights), "OMP_NUM_THREADS": "1"}

    def _run(*args):
        p = subprocess.run([sys.executable, "-m", "vqcodec.cli.main", *args], cwd=tmp_path, env=env,
                           capture_output=True, timeout=300)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    return _run


@pytest.fixture()
def images(tmp_path, make_image):
    for name, (h, w, seed) in {"a.png": (64, 96, 1), "b.png": (40, 56, 2)}.items():
        Image.fromarray(make_image(h, w, seed)).save(tmp_path / name)
    return ["a.png", "b.png"]


@pytest.fixture()
def wav(tmp_path, make_audio):
    sf.write(tmp_path / "s.wav", make_audio(0.5, 16000, 1, 0), 16000)
    return "s.wav"


# ------------------------------------------------------------------------------------------------ item 1
def test_output_option_is_read_strictly(run, images, tmp_path):
    (tmp_path / "text.png").write_bytes(b"a file")
    cases = [
        (("encode", "a.png", "-o", "-q", "50"), "looks like an option"),
        (("encode", "a.png", "b.png", "-o", "single.vq"), "need an output folder"),
        (("encode", "a.png", "-o", ""), "-o is empty"),
        (("encode", "a.png", "-o", "text.png/"), "text.png is a file, not a folder"),
        (("decode", "x.vq", "-o", ""), "-o is empty"),
    ]
    for args, message in cases:
        code, _, err = run(*args)
        assert code == 2, (args, err)
        assert message in err and "e.g. -o " in err and "\n" not in err.strip(), err
    assert not (tmp_path / "-q").exists() and not (tmp_path / "single.vq").exists()


# ------------------------------------------------------------------------------------------------ item 2
def test_unreachable_size_target_warns_with_the_smallest_size_and_exits_3(run, images, tmp_path):
    code, _, err = run("encode", "a.png", "-o", "s.vq", "--size", "50")
    assert code == 3, err
    size = (tmp_path / "s.vq").stat().st_size
    assert size > 50 and f"smallest this image codes to is {size} bytes" in err and "warning" in err
    code, _, err = run("encode", "a.png", "-o", "b.vq", "--bpp", "0.01")
    assert code == 3 and "--bpp 0.01" in err and "smallest" in err and "bpp" in err, err
    code, _, err = run("encode", "a.png", "-o", "ok.vq", "--size", "100000")
    assert code == 0 and "warning" not in err, err


# ------------------------------------------------------------------------------------------------ item 4
def test_unwritable_destination_fails_before_coding_naming_the_path(run, images, tmp_path):
    code, _, err = run("encode", "a.png", "-o", "/proc/x.vq")
    assert code == 1 and "cannot write /proc/x.vq" in err and ".part" not in err and "Errno" not in err, err
    assert "folder you can write to" in err
    assert run("encode", "a.png", "-o", "a.vq")[0] == 0
    code, _, err = run("decode", "a.vq", "-o", "/proc/")
    assert code == 1 and "/proc/" in err and ".part" not in err and "Errno" not in err, err


# ------------------------------------------------------------------------------------------------ item 5
@pytest.mark.parametrize("option", [["--alpha", "drop"], ["--strip"], ["--effort", "2"], ["--size", "900"]])
def test_image_only_options_are_refused_alike_for_audio(run, wav, option):
    code, _, err = run("encode", wav, "-o", "s.vq", *option)
    assert code == 2, err
    assert f"{option[0]} applies to images only" in err and "leave it out" in err, err


def test_sample_refuses_the_other_modalitys_option_and_renames_size(run, tmp_path):
    code, _, err = run("sample", "-o", "s.wav", "--dims", "64x64")
    assert code == 2 and "--dims is for images" in err, err
    code, _, err = run("sample", "-o", "s.png", "--seconds", "3")
    assert code == 2 and "--seconds is for audio" in err, err
    code, _, err = run("sample", "-o", "s.wav", "--size", "64x64")
    assert code == 2 and "--dims is for images" in err, err
    code, _, err = run("sample", "-o", "s.png", "--size", "16x8")
    assert code == 0 and "deprecated" in err and "--dims" in err, err
    assert Image.open(tmp_path / "s.png").size == (16, 8)
    assert "--dims" in run("sample", "--help")[1]


def test_decode_layers_above_the_files_count_warns(run, images, tmp_path):
    assert run("encode", "a.png", "-o", "a.vq")[0] == 0
    layers = json.loads(run("info", "a.vq", "--json")[1])["layers"]
    code, _, err = run("decode", "a.vq", "-o", "a9.png", "--layers", str(layers + 6))
    assert code == 0, err
    assert f"holds {layers} quality layers; decoding all {layers}" in err, err


def test_unknown_speaker_gets_a_short_hint():
    import click

    from vqcodec.cli.convert import _check_speaker

    known = [str(1000 + i) for i in range(251)]
    _check_speaker("1003", known)
    with pytest.raises(click.ClickException) as e:
        _check_speaker("9", known)
    message = e.value.format_message()
    assert len(message) < 200 and "1000, 1001" in message and "--list-speakers" in message, message
    assert "not a file" in message and "recording" in message  # --speaker also takes a reference recording


# ------------------------------------------------------------------------------------------------ item 6
def test_batch_shows_one_bar_counting_files(run, images):
    code, _, err = run("encode", *images, "-o", "bar/", "-j", "1", "--progress")
    assert code == 0, err
    assert "0/2" in err and "file" in err and "->" not in err, err  # the bar, no per-file lines
    code, _, err = run("encode", *images, "-o", "lines/", "-j", "1", "--no-progress")
    assert code == 0 and err.count(" -> ") == 2 and "0/2" not in err, err
    code, _, err = run("encode", *images, "-o", "both/", "-j", "1", "--progress", "-v")
    assert code == 0 and err.count(" -> ") == 2 and "0/2" in err, err


def test_single_file_shows_a_progress_bar(run, images, wav):
    code, _, err = run("encode", "a.png", "-o", "a.vq", "--progress")
    assert code == 0 and "encode:" in err and "%|" in err, err
    code, _, err = run("decode", "a.vq", "-o", "a.png", "-f", "--progress")
    assert code == 0 and "decode:" in err and "%|" in err, err
    code, _, err = run("encode", wav, "-o", "s.vq", "--progress")
    assert code == 0 and "encode:" in err and "%|" in err, err


# ------------------------------------------------------------------------------------------------ item 8
def test_verbose_after_the_subcommand_and_plurals(run, images):
    code, _, err = run("encode", "a.png", "-o", "a.vq", "-q", "1", "-v")
    assert code == 0, err
    assert "1 layer," in err and "1 layers" not in err, err
    code, _, err = run("encode", *images, "-o", "out/", "-j", "1")
    assert code == 0 and "(1 worker)" in err, err


def test_info_takes_several_files_shows_quality_and_effort(run, images, tmp_path):
    assert run("encode", "a.png", "-o", "a.vq", "-q", "40", "--effort", "1")[0] == 0
    assert run("encode", "b.png", "-o", "b.vq")[0] == 0
    one = json.loads(run("info", "a.vq", "--json")[1])
    assert (one["quality"], one["effort"]) == (40, 1)
    code, out, err = run("info", "a.vq", "b.vq")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 3 and "QUALITY" in lines[0] and "EFFORT" in lines[0]
    assert lines[1].split()[0] == "a.vq" and lines[1].split()[-2:] == ["40", "1"]
    assert lines[2].split()[0] == "b.vq" and lines[2].split()[-2:] == ["100", "2"]
    listed = json.loads(run("info", "a.vq", "b.vq", "--json")[1])
    assert [d["file"] for d in listed] == ["a.vq", "b.vq"] and listed[1]["quality"] == 100
    code, out, err = run("info", "a.vq", "missing.vq", "b.vq")
    assert code == 1 and "missing.vq" in err and len(out.strip().splitlines()) == 3, (out, err)


def test_info_of_a_file_that_records_no_settings(run, tmp_path):
    from pathlib import Path

    old = Path(__file__).parent / "data" / "release_v0.3.0" / "kodim23_crop_64x48_q5.vq"
    d = json.loads(run("info", str(old), "--json")[1])
    assert d["quality"] is None and d["effort"] is None and d["layers"] == 1
    assert "not recorded" in run("info", str(old))[1]


def test_convert_layers_above_the_files_count_warns_and_converts(tiny_audio_weights, tmp_path, make_audio):
    """With the tiny audio model and a tiny conversion model (the shipped weights have no conversion model)."""
    import shutil

    from vqcodec.testing import write_tiny_conversion_model

    folder = tmp_path / "w"
    folder.mkdir()
    for name in ("audio_vqvae.safetensors", "audio_prior.safetensors"):
        shutil.copy(tiny_audio_weights / name, folder / name)
    write_tiny_conversion_model(folder)
    sf.write(tmp_path / "s.wav", make_audio(0.5, 16000, 1, 0), 16000)
    env = {**os.environ, "VQCODEC_WEIGHTS_DIR": str(folder), "OMP_NUM_THREADS": "1"}

    def run(*args):
        p = subprocess.run([sys.executable, "-m", "vqcodec.cli.main", *args], cwd=tmp_path, capture_output=True,
                           env=env, timeout=300)
        return p.returncode, p.stderr.decode()

    assert run("encode", "s.wav", "-o", "s.vq", "-q", "2")[0] == 0
    code, err = run("convert", "s.vq", "--speaker", "22", "--layers", "20", "-o", "c.wav")
    assert code == 0, err
    assert "holds 2 quality layers; converting all 2" in err and (tmp_path / "c.wav").is_file()
    code, err = run("convert", "s.vq", "--speaker", "99999", "-o", "d.wav")
    assert code == 1 and "--list-speakers" in err and len(err) < 400, err
