"""Interrupted commands leave nothing behind (issue 13): Ctrl-C (SIGINT), SIGTERM or SIGHUP while the
output is being written removes the partial file and keeps an existing one intact; SIGKILL cannot be
caught, but the output still appears only complete (atomic rename), never torn.

The real console entry point runs in a subprocess on the tiny test models, decoding a 5-minute audio file
(the output is streamed into its temporary file for a few seconds); the signal is sent once that
temporary file exists, i.e. in the middle of writing.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vqcodec
from vqcodec.testing import speechlike


@pytest.fixture(scope="module")
def long_vq(tiny_all_weights, tmp_path_factory) -> Path:
    from vqcodec.testing import use_weights_folder

    before = os.environ.get("VQCODEC_WEIGHTS_DIR")
    use_weights_folder(tiny_all_weights)
    try:
        data = vqcodec.encode_audio(speechlike(300.0, 16000, 1, seed=4), 16000, quality=1)
    finally:
        use_weights_folder(Path(before) if before else None)
    path = tmp_path_factory.mktemp("long") / "long.vq"
    path.write_bytes(data)
    return path


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.part"))


def _decode_and_signal(tiny_all_weights, vq: Path, out: Path, sig: int, force: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "VQCODEC_WEIGHTS_DIR": str(tiny_all_weights), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "vqcodec.cli.main", "decode", str(vq), "-o", str(out)] + (["--force"] if force else [])
    # a terminal delivers Ctrl-C; a job started in the background of a script inherits SIGINT ignored, and
    # so would the decoder: restore the default, as an interactive shell gives its foreground commands
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not _parts(out.parent):
        assert proc.poll() is None, f"decode ended before its output was being written: {proc.stderr.read()!r}"
        assert time.monotonic() < deadline, "no temporary output appeared"
        time.sleep(0.01)
    time.sleep(0.2)  # some samples are in the temporary file now
    assert proc.poll() is None, "decode ended before the signal: use a longer file"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
@pytest.mark.parametrize("existing", [False, True], ids=["new", "replacing"])
def test_interrupted_decode_leaves_no_partial_file(tiny_all_weights, long_vq, tmp_path, sig, existing):
    out = tmp_path / "out.wav"
    if existing:
        out.write_bytes(b"the user's older file")
    p = _decode_and_signal(tiny_all_weights, long_vq, out, sig, force=existing)
    assert p.returncode == 128 + sig, p.stderr.decode()
    assert "interrupted" in p.stderr.decode() and "Traceback" not in p.stderr.decode()
    assert _parts(tmp_path) == []
    if existing:
        assert out.read_bytes() == b"the user's older file"
    else:
        assert not out.exists()


def test_killed_decode_never_leaves_a_torn_output(tiny_all_weights, long_vq, tmp_path):
    """SIGKILL cannot be handled: the hidden temporary file may stay, but the output name holds either the
    old file or nothing, never part of the new one."""
    out = tmp_path / "out.wav"
    out.write_bytes(b"old")
    p = _decode_and_signal(tiny_all_weights, long_vq, out, signal.SIGKILL, force=True)
    assert p.returncode == -signal.SIGKILL
    assert out.read_bytes() == b"old"
    assert all(part.name.startswith(".out.wav.") for part in _parts(tmp_path))
