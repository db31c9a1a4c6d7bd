"""Speaker conversion behind the API and the CLI (issue 23): `vqcodec.convert_speaker`, `vqcodec.list_speakers` and
`vqcodec convert` with the conversion model (registry role "conversion"), on the tiny audio model and a tiny
conversion model (vqcodec.testing) in a weights folder without a manifest; the chunked renderer
(vqcodec.audio.converter) and the inference pitch module (vqcodec.audio.pitch)."""
import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

import vqcodec
from vqcodec.audio.conversion import load_conversion_model
from vqcodec.audio.converter import Converter
from vqcodec.audio.pitch import PITCH_HOP, pitch_labels, pitch_track
from vqcodec.cli.main import cli
from vqcodec.testing import write_tiny_conversion_model

SPEAKERS = ("11", "22", "33")
F0_HZ = (110.0, 180.0, 250.0)
CODEC_ROOT = Path(vqcodec.__file__).resolve().parent


def _audio_folder(src: Path, dst: Path, conversion: bool = True) -> Path:
    """The tiny audio model's files in `dst` (no manifest), with the tiny conversion model unless told not to."""
    dst.mkdir(parents=True)
    for name in ("audio_vqvae.safetensors", "audio_prior.safetensors"):
        shutil.copy(src / name, dst / name)
    if conversion:
        write_tiny_conversion_model(dst, SPEAKERS, F0_HZ)
    return dst


@pytest.fixture(scope="module")
def conversion_folder(tiny_audio_weights, tmp_path_factory) -> Path:
    return _audio_folder(tiny_audio_weights, tmp_path_factory.mktemp("conversion") / "w")


@pytest.fixture()
def weights(conversion_folder, use_weights) -> Path:
    use_weights(conversion_folder)
    return conversion_folder


def _differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


# ------------------------------------------------------------------------------------------------ registry, table
def test_registry_finds_the_conversion_component(conversion_folder, tiny_audio_weights, tmp_path):
    from vqcodec.registry import OPTIONAL_ROLES, ModelRegistry

    assert "conversion" in OPTIONAL_ROLES
    found = ModelRegistry(conversion_folder).optional("audio", "conversion")
    assert found is not None and found.model_id == "tiny-conversion"
    assert found.path.name == "audio_conversion.safetensors"
    without = ModelRegistry(_audio_folder(tiny_audio_weights, tmp_path / "bare", conversion=False))
    assert without.optional("audio", "conversion") is None
    assert ModelRegistry(conversion_folder).optional("audio", "speaker-decoder") is None  # not a conversion file


def test_list_speakers_gives_ids_and_median_pitch(weights):
    table = vqcodec.list_speakers()
    assert [sid for sid, _ in table] == list(SPEAKERS)
    np.testing.assert_allclose([hz for _, hz in table], F0_HZ, rtol=5e-3)  # float16 in the file


def test_list_speakers_cli(weights):
    r = CliRunner().invoke(cli, ["convert", "--list-speakers"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == ["11 110 Hz", "22 180 Hz", "33 250 Hz"]


# ------------------------------------------------------------------------------------------------ the API
def test_convert_array_keeps_rate_channels_and_length(weights, make_audio):
    x = make_audio(0.7, 22050, 2, seed=1)[:15001]  # not a whole number of anything
    y, rate = vqcodec.convert_speaker(x, "22", sample_rate=22050)
    assert rate == 22050 and y.shape == x.shape == (15001, 2) and y.dtype == np.float32
    assert np.isfinite(y).all() and np.abs(y).max() <= 1.0 and np.abs(y).max() > 0.01
    assert _differ(y[:, 0], y[:, 1]) > 1e-3  # each channel converted from its own signal
    calls = []
    mono, rate = vqcodec.convert_speaker(x[:, 0], 22, sample_rate=22050,  # (T,) in, an int id
                                         progress=lambda done, total: calls.append((done, total)))
    assert mono.shape == (15001, 1) and rate == 22050
    np.testing.assert_array_equal(mono[:, 0], y[:, 0])
    assert calls and calls[-1][0] == calls[-1][1] and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_two_speakers_give_different_audio(weights, make_audio):
    x = make_audio(0.6, 16000, 1, seed=2)
    a, _ = vqcodec.convert_speaker(x, "11", sample_rate=16000)
    b, _ = vqcodec.convert_speaker(x, "33", sample_rate=16000)
    again, _ = vqcodec.convert_speaker(x, "11", sample_rate=16000)
    np.testing.assert_array_equal(a, again)  # deterministic
    assert _differ(a, b) > 0.01


def test_convert_a_vq_file_decodes_its_layers_first(weights, make_audio):
    x = make_audio(0.5, 16000, 1, seed=3)
    data = vqcodec.encode_audio(x, 16000, quality=3)
    y, rate = vqcodec.convert_speaker(data, "33", layers=1)
    decoded, _ = vqcodec.decode(data, layers=1)
    expected, _ = vqcodec.convert_speaker(decoded, "33", sample_rate=16000)
    assert rate == 16000 and y.shape == (8000, 1)
    np.testing.assert_array_equal(y, expected)
    all_layers, _ = vqcodec.convert_speaker(data, "33")
    assert not np.array_equal(all_layers, y)
    with pytest.raises(ValueError, match="sample_rate is for sample arrays"):
        vqcodec.convert_speaker(data, "33", sample_rate=16000)
    with pytest.raises(ValueError, match="give sample_rate"):
        vqcodec.convert_speaker(x, "33")
    with pytest.raises(vqcodec.VQFormatError):
        vqcodec.convert_speaker(b"not a .vq file", "33")


def test_convert_by_reference_path_or_samples(weights, tmp_path, make_audio):
    x = make_audio(0.6, 16000, 1, seed=4)
    low = make_audio(1.0, 24000, 2, seed=5)
    sf.write(tmp_path / "voice.wav", low, 24000, subtype="FLOAT")  # float: the file's samples are `low` exactly
    by_path, rate = vqcodec.convert_speaker(x, str(tmp_path / "voice.wav"), sample_rate=16000)
    by_pathlib, _ = vqcodec.convert_speaker(x, tmp_path / "voice.wav", sample_rate=16000)
    by_samples, _ = vqcodec.convert_speaker(x, (low, 24000), sample_rate=16000)
    assert rate == 16000 and by_path.shape == x.shape
    np.testing.assert_array_equal(by_path, by_samples)
    np.testing.assert_array_equal(by_path, by_pathlib)
    other, _ = vqcodec.convert_speaker(x, (make_audio(1.0, 16000, 1, seed=6) * 0.3, 16000), sample_rate=16000)
    assert _differ(by_path, other) > 1e-3  # another voice, another result
    with pytest.raises(FileNotFoundError, match="reference recording not found"):
        vqcodec.convert_speaker(x, tmp_path / "missing.wav", sample_rate=16000)
    with pytest.raises(ValueError, match="at least"):
        vqcodec.convert_speaker(x, (low[:100], 24000), sample_rate=16000)


def test_reference_target_is_its_embedding_and_pitch_stats(conversion_folder, make_audio):
    from vqcodec.audio.conversion import pitch_stats

    model, _ = load_conversion_model(conversion_folder / "audio_conversion.safetensors")
    conv = Converter(model)
    ref = torch.from_numpy(make_audio(1.0, 16000, 1, seed=7)[:, 0])
    target = conv.reference_target(ref.numpy(), 16000, "r")
    torch.testing.assert_close(target.embedding, model.embed_speaker(ref[None])[0])
    f0, voiced = pitch_labels(ref[: ref.numel() // PITCH_HOP * PITCH_HOP], model.cfg.pitch)
    torch.testing.assert_close(target.f0, torch.stack(pitch_stats(f0, voiced)))
    assert 100 < target.median_hz < 200  # speechlike glides around 120 Hz


def test_unknown_id_names_a_few_and_how_to_list_them(weights, make_audio):
    with pytest.raises(ValueError, match=r"unknown speaker '44'.*\(11, 22, 33\).*list_speakers"):
        vqcodec.convert_speaker(make_audio(0.2), "44", sample_rate=16000)
    with pytest.raises(TypeError, match="speaker must be"):
        vqcodec.convert_speaker(make_audio(0.2), 1.5, sample_rate=16000)


def test_missing_conversion_model_says_how_to_get_one(tiny_audio_weights, tmp_path, use_weights, make_audio):
    use_weights(_audio_folder(tiny_audio_weights, tmp_path / "bare", conversion=False))
    data = vqcodec.encode_audio(make_audio(0.3), 16000)
    assert vqcodec.decode(data)[0].shape == (4800, 1)  # coding does not need it
    for call in (lambda: vqcodec.convert_speaker(data, "11"), vqcodec.list_speakers):
        with pytest.raises(FileNotFoundError) as e:
            call()
        message = str(e.value)
        assert "audio_conversion.safetensors" in message and "vqcodec train conversion" in message
        assert "VQCODEC_WEIGHTS_DIR" in message


def test_missing_pyworld_says_what_to_install(weights, tmp_path, make_audio, monkeypatch):
    sf.write(tmp_path / "s.wav", make_audio(0.2), 16000)
    monkeypatch.setitem(sys.modules, "pyworld", None)  # `import pyworld` raises ImportError
    with pytest.raises(ModuleNotFoundError, match="pip install pyworld-prebuilt"):
        vqcodec.convert_speaker(make_audio(0.2), "11", sample_rate=16000)
    r = CliRunner().invoke(cli, ["convert", str(tmp_path / "s.wav"), "--speaker", "11", "-o", str(tmp_path / "o.wav")])
    assert r.exit_code == 1 and "pip install pyworld-prebuilt" in r.output and not (tmp_path / "o.wav").exists()


# ------------------------------------------------------------------------------------------------ long inputs
def test_chunked_rendering_equals_one_pass(conversion_folder, make_audio):
    """The converter renders chunks of content frames with halos; the result is the model's one-pass convert."""
    model, _ = load_conversion_model(conversion_folder / "audio_conversion.safetensors")
    x = torch.from_numpy(make_audio(1.3, 16000, 1, seed=8)[:, 0])[:20777]
    small = Converter(model, chunk_seconds=0.05)  # 5 content frames a chunk
    assert small.chunk == 5
    target = small.table_target("22")
    y = small.convert_16k(x, target)
    xp = torch.nn.functional.pad(x, (0, -x.numel() % PITCH_HOP))
    f0, voiced = pitch_labels(xp, model.cfg.pitch)
    whole = model.convert(xp[None], f0[None], voiced[None].float(), "22")[0, :x.numel()]
    assert y.shape == x.shape
    torch.testing.assert_close(y, whole, rtol=0, atol=1e-5)
    assert torch.equal(small._content(torch.nn.functional.pad(x, (0, -x.numel() % 160)), 130),
                       Converter(model)._content(torch.nn.functional.pad(x, (0, -x.numel() % 160)), 130))


def test_pitch_track_of_a_long_signal_matches_the_whole_track(make_audio):
    x = torch.from_numpy(make_audio(3.0, 16000, 1, seed=9)[:, 0])
    f0, voiced = pitch_labels(x, "harvest")
    short_f0, short_voiced = pitch_track(x, "harvest")  # under a chunk: exactly pitch_labels
    assert torch.equal(short_f0, f0) and torch.equal(short_voiced, voiced)
    pf0, pvoiced = pitch_track(x, "harvest", chunk_seconds=1.0, overlap_seconds=0.5)
    assert pf0.shape == f0.shape and pvoiced.dtype == torch.bool
    agree = pvoiced == voiced
    assert agree.float().mean() > 0.9
    both = pvoiced & voiced
    assert both.sum() > 100 and ((pf0[both] / f0[both] - 1).abs() < 0.05).float().mean() > 0.95


# ------------------------------------------------------------------------------------------------ the CLI
def test_convert_cli_from_vq_and_from_wav(weights, tmp_path, make_audio, monkeypatch):
    runner = CliRunner()
    vq = tmp_path / "in.vq"
    vq.write_bytes(vqcodec.encode_audio(make_audio(0.5), 16000))
    out = tmp_path / "out" / "x.wav"
    out.parent.mkdir()
    r = runner.invoke(cli, ["convert", str(vq), "--speaker", "33", "-o", str(out)])
    assert r.exit_code == 0, r.output
    y, rate = sf.read(out, dtype="float32", always_2d=True)
    assert rate == 16000 and y.shape == (8000, 1)
    expected, _ = vqcodec.convert_speaker(vq.read_bytes(), "33")
    np.testing.assert_allclose(y, expected, atol=1.0 / 32767)  # through 16-bit PCM
    assert [p.name for p in out.parent.iterdir()] == ["x.wav"]  # no temporary file left

    wav = tmp_path / "in.wav"
    sf.write(wav, make_audio(0.5, 22050, 2, seed=3)[:9923], 22050)
    ref = tmp_path / "voice.flac"
    sf.write(ref, make_audio(1.0, 16000, 1, seed=11), 16000)
    for speaker, name in (("11", "id.flac"), (str(ref), "ref.wav")):
        r = runner.invoke(cli, ["convert", str(wav), "--speaker", speaker, "-o", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        info = sf.info(str(tmp_path / name))
        assert (info.samplerate, info.channels, info.frames) == (22050, 2, 9923)
    a = sf.read(tmp_path / "id.flac")[0]
    b = sf.read(tmp_path / "ref.wav")[0]
    assert _differ(a, b) > 1e-3

    r = runner.invoke(cli, ["convert", str(wav), "--speaker", "11", "-o", str(tmp_path / "id.flac")])
    assert r.exit_code == 1 and "--force" in r.output
    r = runner.invoke(cli, ["convert", str(wav), "--speaker", "11", "-o", str(tmp_path / "id.flac"), "-f"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["convert", str(wav), "--speaker", "11", "-o", "-"])
    assert r.exit_code == 0 and r.stdout_bytes[:4] == b"RIFF" and len(r.stdout_bytes) == 44 + 9923 * 2 * 2
    r = runner.invoke(cli, ["convert", str(wav), "--speaker", "11", "--layers", "2", "-o", str(tmp_path / "l.wav")])
    assert r.exit_code == 2 and "--layers is for .vq input" in r.output
    r = runner.invoke(cli, ["convert", str(wav), "-o", str(tmp_path / "m.wav")])
    assert r.exit_code == 2 and "--speaker" in r.output
    (tmp_path / "notes.txt").write_text("not a recording")
    r = runner.invoke(cli, ["convert", str(wav), "--speaker", str(tmp_path / "notes.txt"), "-o", str(tmp_path / "n.wav")])
    assert r.exit_code == 1 and "notes.txt: not a readable audio file" in r.output and not (tmp_path / "n.wav").exists()

    def fail(*args, **kwargs):  # the write is atomic: a failure while writing leaves nothing behind
        raise OSError("disk full")

    monkeypatch.setattr("soundfile.SoundFile.write", fail)
    r = runner.invoke(cli, ["convert", str(vq), "--speaker", "11", "-o", str(tmp_path / "z.wav")])
    assert r.exit_code != 0 and not list(tmp_path.glob("z.wav*")) and not list(tmp_path.glob(".z.wav*"))


def test_convert_cli_unknown_speaker_and_missing_model(conversion_folder, tiny_audio_weights, tmp_path, make_audio):
    """Through the console entry point (its one-line errors), in a subprocess."""
    sf.write(tmp_path / "s.wav", make_audio(0.3), 16000)
    bare = _audio_folder(tiny_audio_weights, tmp_path / "bare", conversion=False)

    def run(folder: Path, *args: str) -> tuple[int, str]:
        env = {**os.environ, "VQCODEC_WEIGHTS_DIR": str(folder), "OMP_NUM_THREADS": "1"}
        p = subprocess.run([sys.executable, "-m", "vqcodec.cli.main", *args], cwd=tmp_path, env=env,
                           capture_output=True, timeout=300)
        return p.returncode, p.stderr.decode()

    code, err = run(conversion_folder, "convert", "s.wav", "--speaker", "404", "-o", "y.wav")
    assert code == 1 and "11, 22, 33" in err and "--list-speakers" in err and len(err) < 300, err
    assert not (tmp_path / "y.wav").exists()
    code, err = run(bare, "convert", "s.wav", "--speaker", "11", "-o", "y.wav")
    assert code == 1 and "vqcodec train conversion" in err and "audio_conversion.safetensors" in err, err
    assert err.count("\n") == 1 and not (tmp_path / "y.wav").exists()


# ------------------------------------------------------------------------------------------------ no training
def test_inference_never_imports_training(conversion_folder, tmp_path, make_audio):
    """No module of the package outside training/ imports vqcodec.training, and a whole conversion (API and CLI,
    by id and by reference, from a .vq file) leaves it unimported."""
    offenders = []
    for path in CODEC_ROOT.rglob("*.py"):
        if "training" in path.relative_to(CODEC_ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.startswith(("vqcodec.training", "codec.training")) for n in names) or (
                    isinstance(node, ast.ImportFrom) and node.level and (node.module or "").startswith("training")):
                offenders.append(str(path.relative_to(CODEC_ROOT)))
    assert not offenders, offenders
    sf.write(tmp_path / "ref.wav", make_audio(0.8, 16000, 1, seed=12), 16000)
    script = (
        "import sys, numpy as np, vqcodec\n"
        "from click.testing import CliRunner\n"
        "from vqcodec.cli.main import cli\n"
        "from vqcodec.testing import speechlike\n"
        "x = speechlike(0.3)\n"
        "vqcodec.convert_speaker(x, '22', sample_rate=16000)\n"
        "vqcodec.convert_speaker(vqcodec.encode_audio(x, 16000), 'ref.wav')\n"
        "r = CliRunner().invoke(cli, ['convert', 'ref.wav', '--speaker', '11', '-o', 'out.wav'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules if m.startswith('vqcodec.training')))\n")
    env = {**os.environ, "VQCODEC_WEIGHTS_DIR": str(conversion_folder), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip() == "[]", p.stdout


def test_a_bare_librispeech_id_of_0_6_is_pointed_to_its_ls_name(tiny_audio_weights, tmp_path, use_weights,
                                                                 make_audio):
    """0.4..0.6's `convert --speaker 1088` took bare reader ids; the conversion model's table names them ls1088."""
    folder = tmp_path / "w"
    shutil.copytree(tiny_audio_weights, folder)
    write_tiny_conversion_model(folder, ("ls1088", "so_1"), (120.0, 200.0))
    use_weights(folder)
    with pytest.raises(ValueError, match="use 'ls1088'"):
        vqcodec.convert_speaker(make_audio(0.2), "1088", sample_rate=16000)
    with pytest.raises(ValueError, match=r"unknown speaker '1089'.*\(ls1088, so_1\)"):
        vqcodec.convert_speaker(make_audio(0.2), 1089, sample_rate=16000)
    sf.write(tmp_path / "in.wav", make_audio(0.3), 16000)
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "in.wav"), "--speaker", "1088", "-o",
                                      str(tmp_path / "out.wav")])
    assert result.exit_code == 1 and "use --speaker ls1088" in result.output
    assert not (tmp_path / "out.wav").exists()


def test_the_shipped_conversion_model():
    """0.9.0 ships audio-conversion-v3 (optional role "conversion"; v1 of 0.7.0 and v2 of 0.8.0 are retired, no file
    names a conversion model):
    float16, a 2-stage content code, its 279-speaker table, and it converts a clip to two table speakers
    differently, keeping the clip's rate and length."""
    from safetensors import safe_open

    from vqcodec.registry import ModelRegistry
    from vqcodec.weights.io import WEIGHTS_DIR

    registry = ModelRegistry(WEIGHTS_DIR)
    comp = registry.optional("audio", "conversion")
    assert comp is not None and comp.model_id == "audio-conversion-v3" and comp.path.stat().st_size < 12e6
    assert any(r["model_id"] == "audio-conversion-v1" and r["releases"] == "0.7.0" for r in registry.retired)
    assert any(r["model_id"] == "audio-conversion-v2" and r["releases"] == "0.8.0" for r in registry.retired)
    with safe_open(str(comp.path), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()} == {torch.float16}
    converter = Converter.load(comp.path)
    assert converter.model.cfg.content_stages == 2
    ids = [sid for sid, _ in converter.speakers]
    assert len(ids) == 279 and "ls1088" in ids and sum(i.startswith("so762_") for i in ids) == 28
    clip, rate = sf.read(Path(__file__).resolve().parents[1] / "data/speech/ljspeech/LJ001-0002.wav", dtype="float32")
    a = converter.convert(clip[:rate], rate, converter.table_target("ls1088"))
    b = converter.convert(clip[:rate], rate, converter.table_target(ids[-1]))
    assert a.shape == b.shape == (rate, 1) and _differ(a, b) > 1e-3


def test_transposed_silent_and_tiny_inputs(weights, make_audio):
    """A (C, T) array is refused with the fix in the message, a reference without voiced speech too, and a source
    too short to resample to 16 kHz converts to silence of its own length."""
    with pytest.raises(ValueError, match=r"2000 channels.*samples\.T"):
        vqcodec.convert_speaker(np.zeros((2, 2000), np.float32), "11", sample_rate=16000)
    with pytest.raises(ValueError, match="no voiced speech"):
        vqcodec.convert_speaker(make_audio(0.5), (np.zeros(16000, np.float32), 16000), sample_rate=16000)
    out, rate = vqcodec.convert_speaker(np.full(1, 0.1, np.float32), "11", sample_rate=44100)
    assert rate == 44100 and out.shape == (1, 1)
