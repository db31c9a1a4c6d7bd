"""The speech codecs `audio_rate_distortion.py` measures, behind one small interface.

A codec here has a CLI key ("opus"), a display name, a description (tool and version, settings), the
settings of its full and of its quick sweep (strings: "6" for Opus at --bitrate 6, "700C" for Codec2, "3"
for vqcodec quality 3), a file extension, and

    code(clip, setting, coded_path, workdir) -> Coded

which writes the complete coded file to `coded_path` (its size on disk is the rate: container or Ogg
overhead included), decodes it, and returns the decoded signal as 16 kHz mono float64.

  * vqcodec, through its public API only: `vqcodec.encode_audio(samples, rate, quality)` on the clip at its
    own sample rate (22.05 kHz LJSpeech is resampled inside the codec) and `vqcodec.decode(bytes)`, in
    process with the model loaded; the decoded audio comes back at the clip's rate and is resampled to
    16 kHz (soxr) for scoring. Its encode and decode times are wall times of those two calls.
  * Opus: `opusenc --bitrate B` (opus-tools; VBR, complexity 10, 20 ms frames: its defaults) on the
    16 kHz reference written as 16-bit WAV, `opusdec --rate 16000 --float` back to 16 kHz.
  * Codec2: `c2enc MODE` / `c2dec MODE` (raw headerless bit file) on the 16 kHz reference resampled to
    8 kHz (soxr) as raw 16-bit PCM, decoded and resampled back to 16 kHz. Codec2 frames are padded to
    whole bytes, so 700C (28 bits per 40 ms) occupies 800 bit/s on disk.

A baseline whose command-line tools are not on PATH is left out by `baseline_codecs`, with the reason.
"""
from __future__ import annotations

import importlib
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import soundfile as sf
import soxr

__all__ = [
    "EVAL_RATE",
    "Clip",
    "Coded",
    "AudioCodec",
    "VqAudioCodec",
    "OpusCodec",
    "Codec2Codec",
    "BASELINE_KEYS",
    "baseline_codecs",
    "load_vqcodec_audio",
    "to_rate",
]

EVAL_RATE = 16000
CODEC2_RATE = 8000
BASELINE_KEYS = ("opus", "codec2")
OPUS_BITRATES = ("6", "8", "12")
CODEC2_MODES = ("700C", "1200", "1600", "2400", "3200")


def to_rate(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """`x` (1-D) resampled from rate_in to rate_out with soxr (HQ), as float64."""
    x = np.asarray(x, dtype=np.float64)
    return x if rate_in == rate_out else soxr.resample(x, rate_in, rate_out, quality="HQ")


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> little-endian int16, rounded and clipped."""
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype("<i2")


@dataclass(frozen=True)
class Clip:
    """One evaluation clip.

    Attributes:
        dataset: name of its set (the folder name).
        name: file path relative to the set's folder.
        samples: float32 (T,) mono at `rate` (multi-channel files are averaged to mono when loaded).
        rate: the file's sample rate in Hz.
        reference: float64 (T16,) the same clip at 16 kHz (soxr), what every codec is scored against.
    """

    dataset: str
    name: str
    samples: np.ndarray
    rate: int
    reference: np.ndarray

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


@dataclass(frozen=True)
class Coded:
    """One clip through one codec setting: the coded file's size, the decoded 16 kHz signal, wall times."""

    nbytes: int
    decoded: np.ndarray
    encode_s: float
    decode_s: float


class AudioCodec(Protocol):
    """What the benchmark needs from a codec."""

    key: str
    name: str
    extension: str
    settings: tuple[str, ...]
    quick_settings: tuple[str, ...]
    in_process: bool  # True: its times are in-process API calls (reported as speed); False: subprocess runs

    @property
    def description(self) -> str: ...

    def code(self, clip: Clip, setting: str, coded_path: Path, workdir: Path) -> Coded:
        """Encode `clip` at `setting` into `coded_path`, decode it; decoded audio at 16 kHz mono."""
        ...


def _run(cmd: Sequence[str]) -> float:
    """Run a tool; returns its wall time. Raises RuntimeError with the tool's stderr on failure."""
    t0 = time.perf_counter()
    p = subprocess.run(list(cmd), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {p.returncode}): {p.stderr.strip()[-500:]}")
    return time.perf_counter() - t0


def _tool_version(cmd: Sequence[str] | None, package: str) -> str:
    """First line of `cmd`'s output (if given and it succeeds), else the Debian package version, else
    "<package> (version unknown)"."""
    if cmd:
        try:
            p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10)
            lines = (p.stdout or p.stderr).strip().splitlines()
            if p.returncode == 0 and lines:
                return lines[0]
        except (OSError, subprocess.SubprocessError):
            pass
    if shutil.which("dpkg-query"):
        p = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
        if p.returncode == 0 and p.stdout.strip():
            return f"{package} {p.stdout.strip()} (Debian package)"
    return f"{package} (version unknown)"


@dataclass(frozen=True)
class OpusCodec:
    """Opus through opus-tools' opusenc/opusdec, on the 16 kHz reference."""

    key: str = "opus"
    name: str = "Opus"
    extension: str = ".opus"
    settings: tuple[str, ...] = OPUS_BITRATES
    quick_settings: tuple[str, ...] = (OPUS_BITRATES[0],)
    in_process: bool = False

    @property
    def description(self) -> str:
        version = _tool_version(["opusenc", "--version"], "opus-tools")
        return f"{version}; opusenc --bitrate B (VBR, complexity 10, 20 ms frames), opusdec --rate 16000 --float"

    def code(self, clip: Clip, setting: str, coded_path: Path, workdir: Path) -> Coded:
        wav_in, wav_out = workdir / "in.wav", workdir / "out.wav"
        sf.write(wav_in, to_pcm16(clip.reference), EVAL_RATE, subtype="PCM_16")
        t_enc = _run(["opusenc", "--quiet", "--bitrate", setting, str(wav_in), str(coded_path)])
        t_dec = _run(["opusdec", "--quiet", "--rate", str(EVAL_RATE), "--float", "--force-wav",
                      str(coded_path), str(wav_out)])
        decoded, rate = sf.read(wav_out, dtype="float64", always_2d=True)
        if rate != EVAL_RATE:
            raise RuntimeError(f"opusdec wrote {rate} Hz, expected {EVAL_RATE}")
        return Coded(coded_path.stat().st_size, decoded[:, 0], t_enc, t_dec)


@dataclass(frozen=True)
class Codec2Codec:
    """Codec2 through c2enc/c2dec, narrow band: 16 kHz -> 8 kHz raw PCM -> bits -> 8 kHz -> 16 kHz."""

    key: str = "codec2"
    name: str = "Codec2"
    extension: str = ".bit"
    settings: tuple[str, ...] = CODEC2_MODES
    quick_settings: tuple[str, ...] = (CODEC2_MODES[-1],)
    in_process: bool = False

    @property
    def description(self) -> str:
        version = _tool_version(None, "codec2")  # c2enc has no --version; ask the package manager
        return (f"{version}; c2enc/c2dec MODE on raw 8 kHz 16-bit PCM (soxr 16 kHz -> 8 kHz -> 16 kHz), "
                "headerless bit file")

    def code(self, clip: Clip, setting: str, coded_path: Path, workdir: Path) -> Coded:
        raw_in, raw_out = workdir / "in.raw", workdir / "out.raw"
        to_pcm16(to_rate(clip.reference, EVAL_RATE, CODEC2_RATE)).tofile(raw_in)
        t_enc = _run(["c2enc", setting, str(raw_in), str(coded_path)])
        t_dec = _run(["c2dec", setting, str(coded_path), str(raw_out)])
        narrow = np.fromfile(raw_out, dtype="<i2").astype(np.float64) / 32768.0
        return Coded(coded_path.stat().st_size, to_rate(narrow, CODEC2_RATE, EVAL_RATE), t_enc, t_dec)


def baseline_codecs(keys: Sequence[str] = BASELINE_KEYS) -> tuple[list[AudioCodec], dict[str, str]]:
    """The baselines among `keys` whose tools are on PATH, and {key: why skipped} for the others."""
    needs = {
        "opus": (OpusCodec, ("opusenc", "opusdec"), "opus-tools"),
        "codec2": (Codec2Codec, ("c2enc", "c2dec"), "codec2"),
    }
    found: list[AudioCodec] = []
    skipped: dict[str, str] = {}
    for key in keys:
        cls, tools, package = needs[key]
        missing = [t for t in tools if shutil.which(t) is None]
        if missing:
            skipped[key] = (f"{' and '.join(missing)} not found on PATH "
                            f"(Debian: apt-get install {package})")
        else:
            found.append(cls())
    return found, skipped


@dataclass(frozen=True)
class VqAudioCodec:
    """vqcodec through its public API (`api` is the imported `vqcodec` module)."""

    api: Any
    settings: tuple[str, ...]
    quick_settings: tuple[str, ...]
    key: str = "vqcodec"
    name: str = "vqcodec"
    extension: str = ".vq"
    in_process: bool = True
    decoder: str | None = None  # a decoder-stage weights file to decode with (`vqcodec.decode(decoder=)`)

    @property
    def description(self) -> str:
        with_decoder = f", decoded with {self.decoder}" if self.decoder else ""
        return (f"vqcodec {getattr(self.api, '__version__', '?')} (public API: encode_audio on the clip at its "
                f"own rate / decode, in process, model loaded{with_decoder})")

    def encode_decode(self, clip: Clip, quality: int) -> tuple[bytes, np.ndarray, int, float, float]:
        """-> (file bytes, decoded (T, C), its rate, encode seconds, decode seconds)."""
        t0 = time.perf_counter()
        data = bytes(self.api.encode_audio(clip.samples, clip.rate, quality))
        t1 = time.perf_counter()
        decoded, rate = self.api.decode(data, decoder=self.decoder) if self.decoder else self.api.decode(data)
        t2 = time.perf_counter()
        return data, np.asarray(decoded), int(rate), t1 - t0, t2 - t1

    def warm_up(self, clip: Clip) -> None:
        """One untimed encode + decode, so first-call costs (allocations, caches) stay out of the speed."""
        self.encode_decode(clip, int(self.settings[0]))

    def code(self, clip: Clip, setting: str, coded_path: Path, workdir: Path) -> Coded:
        data, decoded, rate, t_enc, t_dec = self.encode_decode(clip, int(setting))
        coded_path.write_bytes(data)
        if decoded.ndim != 2 or decoded.shape[0] != len(clip.samples):
            raise RuntimeError(f"vqcodec decoded {clip.name} to shape {decoded.shape}, expected "
                               f"({len(clip.samples)}, C)")
        mono = decoded.astype(np.float64).mean(axis=1)
        return Coded(coded_path.stat().st_size, to_rate(mono, rate, EVAL_RATE), t_enc, t_dec)


def load_vqcodec_audio() -> tuple[Any, int] | str:
    """Import vqcodec and load its audio model: (api module, max quality), or a one-line reason it cannot."""
    try:
        api = importlib.import_module("vqcodec")
    except ImportError as exc:
        return f"vqcodec is not importable ({exc}); install it with `pip install -e .` from the repo root"
    missing = [n for n in ("encode_audio", "decode", "max_quality") if not hasattr(api, n)]
    if missing:
        return f"vqcodec's public API is missing {', '.join(missing)}"
    try:
        top = int(api.max_quality("audio"))
    except Exception as exc:  # noqa: BLE001 - any failure here means the audio codec cannot be measured
        first_line = (str(exc).strip().splitlines() or [""])[0]
        return f"vqcodec.max_quality('audio') failed: {type(exc).__name__}: {first_line}"
    if top < 1:
        return f"vqcodec.max_quality('audio') returned {top}; expected >= 1"
    return api, top
