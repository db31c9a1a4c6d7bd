"""The audio codec: samples -> 16 kHz -> frame indices -> range-coded streams -> .vq bytes, and back.

    encode: float32 samples (T, C) at any rate -> per channel, resampled to 16 kHz as a stream (soxr) ->
            AudioVQVAE encoder on chunks of frames with a halo >= its receptive field -> ResidualVQ
            indices (S, N) per channel (N = ceil(T16 / hop) frames) -> the frames are cut into blocks;
            each (channel, block) is range-coded stage by stage under the integer audio prior
            (vqcodec.coding) -> container: format version 2, AUDIO_GEOMETRY (input rate, channels,
            samples), SEGMENT_TABLE (frames per block), and per quality layer k one stream per
            (channel, block), channel-major
    decode: the same in reverse; the decoder renders chunks of frames with a halo >= its receptive
            field, resamples back to the input's rate as a stream, and cuts the result to exactly the
            input's length

Memory is bounded, whatever the file's length: the waveform is only ever held a chunk at a time (plus
halos). The encoder range-codes each block of frames as soon as its indices are known and keeps only the
coded bytes; the decoder (`decode_blocks`) decodes a block's index streams when the first chunk that needs
them is rendered and releases them once the chunks have passed, so it holds the file's bytes, the indices
of the one or two blocks under the current chunk and one chunk of audio. After each chunk and each block
the heap's free pages are handed back to the OS (`_release_free_memory`): without it, the allocator's
free-but-resident memory drifts from chunk to chunk, and a long file's peak RSS (the highest of many more
chunks) comes out above a short one's. Every chunk edge is a multiple of
the hop, and the halo makes a chunk's frames (and samples) those of a whole-clip pass: the same file
decodes to the same samples whatever `chunk_seconds` the decoder uses (tested).

Quality: quality q in 1..max_quality codes the first q residual stages (each about 0.45 kbit/s per
channel before entropy coding at 50 frames/s); decoding `layers` n gives the first n.

What is exact: the indices, as for images. Samples come from a float decoder (within 1 LSB of 16-bit
across thread counts; measured and tested).
"""
from __future__ import annotations

import bisect
import copy
import ctypes
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np
import soxr
import torch

from vqcodec.audio.decoders import load_audio_decoder
from vqcodec.audio.hn_decoder import HNDecoder
from vqcodec.audio.model import SAMPLE_RATE, load_audio_model
from vqcodec.audio.prior_integer import load_integer_audio_prior
from vqcodec.bitstream import AudioGeometry, Modality, VQFile, VQFormatError, read_file, segment_table_chunk, write_file
from vqcodec.coding.stages import check_stream_lengths, decode_stages, encode_stages
from vqcodec.contract import Progress, check_file, check_layers, check_weight_files, read_components
from vqcodec.limits import check_decode_size
from vqcodec.version import __version__

__all__ = ["AudioCodec", "AudioStream", "MAX_CHANNELS", "MAX_SAMPLE_RATE"]

MAX_CHANNELS = 255
MAX_SAMPLE_RATE = 768_000
BLOCK_SECONDS = 30.0  # frames per coded block: the unit of seeking and of the prior's lockstep batch
CHUNK_SECONDS = 20.0  # frames the nets process at once (plus halos)
READ_BLOCK = 1 << 16  # input samples per read when streaming


@dataclass(frozen=True)
class AudioStream:
    """Audio to encode, delivered in blocks so a long file never sits in memory whole.

    Attributes:
        sample_rate: Hz.
        channels: C.
        blocks: iterable of float32 arrays (n, C), n >= 0, in order.
        num_samples: total samples per channel, if known (for the progress bar); None otherwise.
    """

    sample_rate: int
    channels: int
    blocks: Iterable[np.ndarray]
    num_samples: int | None = None

    @classmethod
    def from_array(cls, samples: np.ndarray, sample_rate: int) -> "AudioStream":
        """float (T,) or (T, C) samples -> an AudioStream of READ_BLOCK-sample blocks."""
        x = np.asarray(samples)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2:
            raise ValueError(f"expected samples of shape (T,) or (T, C), got {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"expected float samples in [-1, 1], got dtype {x.dtype}; convert integer PCM first")
        return cls(int(sample_rate), x.shape[1], (x[i:i + READ_BLOCK] for i in range(0, x.shape[0], READ_BLOCK)),
                   x.shape[0])

    @classmethod
    def from_file(cls, path: str | Path) -> "AudioStream":
        """Any file soundfile reads, streamed in blocks (the file stays open until the blocks are consumed)."""
        import soundfile as sf

        info = sf.info(str(path))

        def blocks() -> Iterator[np.ndarray]:
            with sf.SoundFile(str(path)) as f:
                while True:
                    b = f.read(READ_BLOCK, dtype="float32", always_2d=True)
                    if not len(b):
                        return
                    yield b

        return cls(int(info.samplerate), int(info.channels), blocks(), int(info.frames) if info.frames > 0 else None)


def _checked(blocks: Iterable[np.ndarray], channels: int) -> Iterator[np.ndarray]:
    """Validate each block: (n, C) finite floats -> float32."""
    for b in blocks:
        b = np.asarray(b)
        if b.ndim == 1 and channels == 1:
            b = b[:, None]
        if b.ndim != 2 or b.shape[1] != channels:
            raise ValueError(f"audio block of shape {b.shape} does not have {channels} channels")
        if not np.isfinite(b).all():
            raise ValueError("audio contains NaN or infinite samples; vqcodec codes finite samples only")
        yield b.astype(np.float32, copy=False)


def _resampled(blocks: Iterable[np.ndarray], rate_in: int, rate_out: int, channels: int) -> Iterator[np.ndarray]:
    """Stream-resample blocks (n, C) from rate_in to rate_out Hz (soxr; equal to resampling the whole signal)."""
    if rate_in == rate_out:
        yield from blocks
        return
    stream = soxr.ResampleStream(rate_in, rate_out, channels, dtype="float32")
    for b in blocks:
        out = stream.resample_chunk(np.ascontiguousarray(b), last=False)
        if len(out):
            yield out.reshape(-1, channels)
    tail = stream.resample_chunk(np.zeros((0, channels), np.float32), last=True)
    if len(tail):
        yield tail.reshape(-1, channels)


def resampled_length(num_samples: int, rate_in: int, rate_out: int) -> int:
    """Samples at rate_out that stand for num_samples at rate_in (ceil)."""
    return -(-num_samples * rate_out // rate_in)


def _find_malloc_trim() -> Callable[[], None]:
    """glibc's malloc_trim(0) as a no-argument function, or a no-op where the C library has none."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # not glibc (macOS, musl, Windows)
        return lambda: None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int

    def trim() -> None:
        fn(0)

    return trim


_release_free_memory = _find_malloc_trim()
"""Hand the heap's free pages back to the OS (glibc: malloc_trim(0), a few ms; elsewhere nothing). Called
after each chunk the nets process and each block the prior codes, so that the resident memory of a long
stream is one chunk's, not the high-water mark of the allocator's free lists over the whole stream."""


class _Window:
    """A sliding window over a stream of (n, C) blocks: samples [start, start + len) kept, older dropped."""

    def __init__(self, blocks: Iterator[np.ndarray], channels: int) -> None:
        self.blocks, self.channels = blocks, channels
        self.buf = np.zeros((0, channels), np.float32)
        self.start = 0
        self.ended = False

    @property
    def end(self) -> int:
        return self.start + len(self.buf)

    def fill_to(self, sample: int) -> None:
        """Read until samples < `sample` are in the window or the stream ends."""
        parts = [self.buf]
        have = self.end
        while have < sample and not self.ended:
            b = next(self.blocks, None)
            if b is None:
                self.ended = True
                break
            parts.append(b)
            have += len(b)
        if len(parts) > 1:
            self.buf = np.concatenate(parts)

    def drop_before(self, sample: int) -> None:
        if sample > self.start:
            cut = min(sample - self.start, len(self.buf))
            self.buf = self.buf[cut:]
            self.start += cut

    def get(self, lo: int, hi: int) -> np.ndarray:
        """Samples [lo, hi) (zeros past the end of the stream), (hi - lo, C)."""
        out = np.zeros((hi - lo, self.channels), np.float32)
        a, b = max(lo, self.start), min(hi, self.end)
        if b > a:
            out[a - lo:b - lo] = self.buf[a - self.start:b - self.start]
        return out


class Renderer(Protocol):
    """Indices -> samples, a chunk of frames at a time, in order.

    `context`: (left, right) frames a frame's samples read beyond it (beyond `left`, a renderer may carry
    what it needs in `state`). `render(indices, own, state, start)`: indices (C, s, n) int64 of n frames (-1:
    stage absent), own = (a, b) the frames whose samples are wanted (the rest is halo, at least `context`
    where the signal has it), state: what the previous chunk returned (None for the first), start: the
    absolute index of the first of the n frames -> (samples (C, (b - a) * hop) float32 in [-1, 1], state for
    the next chunk). Consecutive chunks give the samples of one pass."""

    context: tuple[int, int]

    def render(self, indices: torch.Tensor, own: tuple[int, int], state: Any, start: int
               ) -> tuple[torch.Tensor, Any]: ...


class StatelessRenderer:
    """A decoder whose samples depend on its receptive field alone: decode(indices (C, s, n)) -> (C, n * hop)."""

    def __init__(self, decode: Callable[[torch.Tensor], torch.Tensor], context: tuple[int, int]) -> None:
        self.decode, self.context = decode, context

    def render(self, indices: torch.Tensor, own: tuple[int, int], state: None, start: int
               ) -> tuple[torch.Tensor, None]:
        y = self.decode(indices)
        hop = y.shape[-1] // indices.shape[-1]
        return y[:, own[0] * hop:own[1] * hop], None


class DecoderRenderer:
    """A decoder-stage decoder (`vqcodec.audio.decoders`) on the model's codebooks. An `HNDecoder` carries its
    oscillators' phase from chunk to chunk (state: (C,) float64 cycles); the others are stateless."""

    def __init__(self, quantizer, decoder: torch.nn.Module) -> None:
        self.quantizer, self.decoder = quantizer, decoder
        f, hop = 1000, decoder.cfg.hop  # any frame far from the start: ranges are translation invariant
        lo, hi = decoder.input_range(f * hop, (f + 1) * hop - 1)
        self.context = (f - lo, hi - f)

    @torch.no_grad()
    def render(self, indices: torch.Tensor, own: tuple[int, int], state: Any, start: int
               ) -> tuple[torch.Tensor, Any]:
        z = self.quantizer.decode(indices.transpose(1, 2))  # (C, n, D)
        if isinstance(self.decoder, HNDecoder):
            stages = (indices >= 0).sum(1) if self.decoder.hn_cfg.residual else None
            y, state = self.decoder.render_span(z, own, state, start, stages)
        else:
            hop = self.decoder.cfg.hop
            y = self.decoder(z)[:, own[0] * hop:own[1] * hop]
        return y.clamp(-1.0, 1.0), state


def _chunks(num_frames: int, chunk: int) -> list[tuple[int, int]]:
    return [(f, min(f + chunk, num_frames)) for f in range(0, num_frames, chunk)]


class AudioCodec:
    """A loaded audio model + integer prior, with encode/decode of .vq bytes.

    Args:
        model_path: safetensors weights of the AudioVQVAE (role "vqvae").
        prior_path: the integer audio prior (role "prior").
        prior_id: the prior's model id as the registry knows it (default: metadata or hash-derived).
        chunk_seconds: audio the nets process at once (memory vs speed; the output does not depend on it).
        decoder_path: a decoder-stage weights file (`vqcodec train audio-decoder`, e.g. the harmonic-plus-
            noise decoder) trained on this model's indices, rendering in place of the model's own decoder;
            None: the model's own. The files it writes name it (a MODEL chunk of role "decoder"), so that
            they decode with it by default; their indices are the same either way.
    """

    modality = "audio"

    def __init__(self, model_path: str | Path, prior_path: str | Path, *, prior_id: str | None = None,
                 chunk_seconds: float = CHUNK_SECONDS, decoder_path: str | Path | None = None) -> None:
        model_path, prior_path = Path(model_path), Path(prior_path)
        check_weight_files((model_path, prior_path), "`vqcodec train audio` and `vqcodec train audio-prior`")
        self.model, self.model_id = load_audio_model(model_path)
        self.prior = load_integer_audio_prior(prior_path)
        cfg = self.model.cfg
        if self.prior.codebook_size != cfg.num_codes or self.prior.num_stages > cfg.num_stages:
            raise ValueError(f"audio prior {prior_path} does not match the model {model_path} (stages/codes differ)")
        self.hop = cfg.hop
        self.components = read_components(model_path, self.model_id, prior_path, prior_id).named  # + decoder below
        frame_rate = SAMPLE_RATE / self.hop
        self.block_frames = max(1, int(round(BLOCK_SECONDS * frame_rate)))
        self.chunk_frames = max(1, int(round(chunk_seconds * frame_rate)))
        left, right = self.model.encoder_context()
        self.enc_halo = -(-max(left, right, 0) // self.hop) + 1  # frames
        self.model_path = model_path
        self.decoder_id: str | None = None  # the decoder-stage model rendering, None: the model's own decoder
        self.decoder_override = False  # with_decoder: renders every file of this model, whatever decoder it names
        self._render_with(self._own_renderer())
        if decoder_path is not None:
            self._use_decoder(decoder_path)
            self.components = read_components(model_path, self.model_id, prior_path, prior_id,
                                              (Path(decoder_path), self.decoder_id)).named

    def _own_renderer(self) -> StatelessRenderer:
        """The model's own decoder as a renderer."""
        return StatelessRenderer(self.model.decode_indices, self.model.decoder_context())

    def _render_with(self, renderer: Renderer) -> None:
        self.renderer: Renderer = renderer
        self.dec_halo = max(renderer.context) + 1  # frames

    def _use_decoder(self, decoder_path: str | Path) -> None:
        decoder, self.decoder_id, _ = load_audio_decoder(decoder_path, self.model_path)
        self._render_with(DecoderRenderer(self.model.quantizer, decoder))

    def with_decoder(self, decoder_path: str | Path | None) -> "AudioCodec":
        """A copy of this codec (sharing its model and prior) that renders with a decoder-stage weights file
        (`vqcodec train audio-decoder`) trained on this model's indices, or with the model's own decoder
        (`decoder_path` None: how every file of 0.4.x renders), for decoding: it renders every file of this
        model and prior, whatever decoder the file names (none, or one not installed), and the files it writes
        name this codec's components. ValueError for a decoder of another base model, FileNotFoundError for a
        missing file."""
        other = copy.copy(self)
        if decoder_path is None:
            other.decoder_id = None
            other._render_with(self._own_renderer())
        else:
            other._use_decoder(decoder_path)
        other.decoder_override = True
        return other

    @property
    def max_quality(self) -> int:
        """Top of the quality scale (= stages the prior codes)."""
        return self.prior.num_stages

    @property
    def max_layers(self) -> int:
        """Most quality layers a file can hold (= stages the prior codes: quality q codes q layers)."""
        return self.prior.num_stages

    def _check_quality(self, quality: int | None) -> int:
        if quality is None:
            return self.max_quality
        if not 1 <= int(quality) <= self.max_quality:
            raise ValueError(f"quality must be 1..{self.max_quality}, got {quality}")
        return int(quality)

    # ------------------------------------------------------------------------------------------ encode
    def _check_audio(self, audio: AudioStream) -> None:
        if not 1 <= audio.sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(f"sample rate {audio.sample_rate} Hz is outside 1..{MAX_SAMPLE_RATE}")
        if not 1 <= audio.channels <= MAX_CHANNELS:
            raise ValueError(f"{audio.channels} channels; vqcodec codes 1..{MAX_CHANNELS}")

    @torch.no_grad()
    def _index_chunks(self, audio: AudioStream, counted: "_Counter", s: int,
                      progress: Progress | None) -> Iterator[torch.Tensor]:
        """Yield the indices of consecutive chunks of frames, (C, s, n) int16 each, n >= 1, in order.

        `counted` wraps the validated blocks of `audio`; once the generator is exhausted, counted.n is the
        number of samples per channel at the input rate."""
        window = _Window(_resampled(counted, audio.sample_rate, SAMPLE_RATE, audio.channels), audio.channels)
        hop, halo = self.hop, self.enc_halo
        f0 = 0
        expected = None if audio.num_samples is None else resampled_length(audio.num_samples, audio.sample_rate,
                                                                            SAMPLE_RATE)
        while True:
            f1 = f0 + self.chunk_frames
            window.fill_to((f1 + halo) * hop)
            total = window.end if window.ended else None  # resampled samples, once the stream has ended
            if total is not None:
                n16 = resampled_length(counted.n, audio.sample_rate, SAMPLE_RATE)
                num_frames = -(-n16 // hop)
                if num_frames == 0:
                    raise ValueError("audio is empty (no samples); nothing to encode")
                if f0 >= num_frames:
                    return
                f1 = min(f1, num_frames)
            lo_f = max(0, f0 - halo)
            hi_f = f1 + halo if total is None else min(f1 + halo, num_frames)
            x = window.get(lo_f * hop, hi_f * hop)
            if total is not None:  # whole frames past the signal's resampled length are zeros
                x[max(0, n16 - lo_f * hop):] = 0.0
            idx = self.model.encode_indices(torch.from_numpy(x.T.copy()), s)  # (C, s, frames)
            idx = idx[:, :, f0 - lo_f:f1 - lo_f].to(torch.int16)
            del x
            _release_free_memory()
            yield idx
            window.drop_before((f1 - halo) * hop)
            f0 = f1
            if progress and expected:
                progress(min(f0 * hop, expected), expected)

    def encode_indices(self, audio: AudioStream, quality: int | None = None,
                       progress: Progress | None = None) -> tuple[torch.Tensor, int]:
        """Stream -> (indices (C, s, N) int16, samples per channel at the input rate).

        Holds the whole clip's indices (2 bytes per frame per stage per channel); `encode` does not."""
        s = self._check_quality(quality)
        self._check_audio(audio)
        counted = _Counter(_checked(audio.blocks, audio.channels))
        chunks = list(self._index_chunks(audio, counted, s, progress))
        return torch.cat(chunks, dim=2), counted.n

    def _code_block(self, block: torch.Tensor) -> list[list[bytes]]:
        """(C, s, n) indices of one block -> streams[channel][stage - 1]."""
        streams = [encode_stages(self.prior, block[ch].long()) for ch in range(block.shape[0])]
        _release_free_memory()
        return streams

    def encode(self, source: "np.ndarray | AudioStream", quality: int | None = None, *,
               progress: Progress | None = None, verify: bool = False, sample_rate: int | None = None) -> bytes:
        """An AudioStream, or float32 (T,) / (T, C) samples at `sample_rate` Hz -> .vq bytes.

        Streams: each block of `block_frames` frames is range-coded as soon as its indices are known and only
        its coded bytes are kept, so memory does not grow with the clip beyond the file's own bytes.
        verify: decode the bytes again, block by block, and check every block's indices against those the
        encoder coded (a SHA-256 of each block's indices is kept, not the indices); RuntimeError if not.
        """
        if isinstance(source, AudioStream):
            audio = source
        elif sample_rate is None:
            raise ValueError("give the samples' sample_rate (Hz), or an AudioStream")
        else:
            audio = AudioStream.from_array(source, int(sample_rate))
        s = self._check_quality(quality)
        self._check_audio(audio)
        counted = _Counter(_checked(audio.blocks, audio.channels))
        coded: list[list[list[bytes]]] = []  # [block][channel][stage - 1]
        sizes: list[int] = []  # frames per block
        digests: list[bytes] = []  # SHA-256 of each block's (C, s, n) int16 indices, for verify
        pending: list[torch.Tensor] = []  # (C, s, n) int16 chunks not yet coded
        have = 0

        def code(n: int) -> None:
            nonlocal pending, have
            joined = torch.cat(pending, dim=2) if len(pending) > 1 else pending[0]
            block, rest = joined[:, :, :n].contiguous(), joined[:, :, n:]
            pending, have = ([rest] if rest.shape[2] else []), have - n
            coded.append(self._code_block(block))
            sizes.append(n)
            if verify:
                digests.append(_digest(block))

        for chunk in self._index_chunks(audio, counted, s, progress):
            pending.append(chunk)
            have += chunk.shape[2]
            while have >= self.block_frames:
                code(self.block_frames)
        if have:
            code(have)
        c = audio.channels
        per_layer = [[coded[j][ch][k] for ch in range(c) for j in range(len(sizes))] for k in range(s)]
        data = write_file(Modality.AUDIO, self.components, AudioGeometry(audio.sample_rate, c, counted.n),
                          per_layer, extra_chunks=[segment_table_chunk(sizes)], encoder=f"vqcodec {__version__}")
        if verify:
            source = _FileIndices(self, read_file(data), None)
            if source.shape[:2] != (c, s) or [b1 - b0 for b0, b1 in source.bounds] != sizes or any(
                    _digest(source.block(j)) != d for j, d in enumerate(digests)):
                raise RuntimeError("verification failed: the decoded indices differ from the encoded ones; "
                                   "please report this as a vqcodec bug")
        return data

    def _blocks(self, num_frames: int) -> list[tuple[int, int]]:
        return _chunks(num_frames, self.block_frames)

    def pack(self, indices: torch.Tensor, sample_rate: int, num_samples: int) -> bytes:
        """(C, s, N) indices of a clip of num_samples samples per channel at sample_rate -> .vq bytes
        (the bytes `encode` writes for the same indices)."""
        c, s, n = indices.shape
        blocks = self._blocks(n)
        per_layer: list[list[bytes]] = [[] for _ in range(s)]
        for ch in range(c):
            for b0, b1 in blocks:
                for k, stream in enumerate(encode_stages(self.prior, indices[ch, :, b0:b1].long())):
                    per_layer[k].append(stream)
        table = segment_table_chunk([b1 - b0 for b0, b1 in blocks])
        return write_file(Modality.AUDIO, self.components, AudioGeometry(sample_rate, c, num_samples), per_layer,
                          extra_chunks=[table], encoder=f"vqcodec {__version__}")

    # ------------------------------------------------------------------------------------------ decode
    def _check_file(self, vqfile: VQFile) -> tuple[int, list[tuple[int, int]]]:
        """Validate an audio file for this codec -> (frames per channel, blocks)."""
        check_file(vqfile, self, ignore_roles=("decoder",) if self.decoder_override else ())
        g = vqfile.geometry
        check_decode_size(g, SAMPLE_RATE)
        n16 = resampled_length(g.num_samples, g.sample_rate, SAMPLE_RATE)
        frames = -(-n16 // self.hop)
        table = list(vqfile.segment_frames) or [frames]
        if sum(table) != frames:
            raise VQFormatError(f"segment table covers {sum(table)} frames; the geometry needs {frames}")
        bounds, f = [], 0
        for n in table:
            bounds.append((f, f + n))
            f += n
        for k in range(1, vqfile.layers + 1):
            if len(vqfile.streams(k)) != g.channels * len(bounds):
                raise VQFormatError(f"quality layer {k} holds {len(vqfile.streams(k))} streams; "
                                    f"{g.channels} channels x {len(bounds)} blocks need {g.channels * len(bounds)}")
            # before anything is allocated: each (channel, block) stream must be able to hold its frames
            check_stream_lengths(self.prior, vqfile.streams(k), [b1 - b0 for b0, b1 in bounds] * g.channels,
                                 what=f"layer {k}, stream")
        return frames, bounds

    def decode_indices(self, data: "bytes | VQFile", layers: int | None = None,
                       progress: Progress | None = None, *, compact: bool = False) -> torch.Tensor:
        """.vq bytes (or a parsed file) -> (C, s, N) int64 indices; s = min(layers, layers in the file).

        compact: return them as int16 (K = 512 fits), a quarter of the memory for long files.
        progress(done, total) is called after each (channel, block) stream set is decoded."""
        vqfile = data if isinstance(data, VQFile) else read_file(data)
        source = _FileIndices(self, vqfile, layers, progress)
        out = torch.empty(source.shape, dtype=torch.int16)
        for j, (b0, b1) in enumerate(source.bounds):
            out[:, :, b0:b1] = source.block(j)
        return out if compact else out.long()

    @torch.no_grad()
    def render_blocks(self, indices: "torch.Tensor | _FileIndices", sample_rate: int, num_samples: int,
                      decode: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Iterator[np.ndarray]:
        """Indices -> float32 (n, C) blocks at sample_rate Hz, num_samples samples per channel in total.

        indices: a (C, s, N) tensor of any integer dtype, or a `_FileIndices` (a file's indices, decoded a
        block at a time as the chunks reach them). One chunk of `chunk_frames` frames (plus a halo of
        `dec_halo` frames each side) is widened to int64 and rendered at a time, so memory does not grow
        with N; the samples do not depend on the chunk size. decode: (C, s, n) int64 -> (C, n * hop) float32,
        another stateless decoder of this model's indices with the same receptive field (default: this
        codec's `renderer`)."""
        frames_of = indices.frames if isinstance(indices, _FileIndices) else (
            lambda lo, hi: indices[:, :, lo:hi].long())
        c, _, frames = indices.shape
        hop, halo = self.hop, self.dec_halo
        n16 = resampled_length(num_samples, sample_rate, SAMPLE_RATE)
        renderer = self.renderer if decode is None else StatelessRenderer(decode, self.model.decoder_context())

        def at_16k() -> Iterator[np.ndarray]:
            state = None
            for f0, f1 in _chunks(frames, self.chunk_frames):
                lo, hi = max(0, f0 - halo), min(frames, f1 + halo)
                y, state = renderer.render(frames_of(lo, hi), (f0 - lo, f1 - lo), state, lo)  # (C, (f1 - f0) * hop)
                y = y[:, : max(0, n16 - f0 * hop)]
                _release_free_memory()
                yield y.T.numpy().astype(np.float32, copy=False)

        written = 0
        for block in _resampled(at_16k(), SAMPLE_RATE, sample_rate, c):
            block = block[: num_samples - written]
            written += len(block)
            if len(block):
                yield block
        if written < num_samples:
            yield np.zeros((num_samples - written, c), np.float32)

    def decode_blocks(self, data: "bytes | VQFile", layers: int | None = None, progress: Progress | None = None
                      ) -> tuple[int, int, int, Iterator[np.ndarray]]:
        """Decode lazily, block by block: .vq bytes (or a parsed file) -> (sample_rate Hz, channels C,
        num_samples T, blocks), blocks yielding float32 (n, C) arrays that add up to T samples per channel.

        The file is parsed and checked here (VQFormatError, ValueError); each block of index streams is
        decoded when the first chunk that needs it is rendered and dropped once the chunks have passed it,
        so memory does not grow with the file's length. A stream damaged in a way the checks cannot see
        raises VQFormatError from the iteration, after the earlier blocks were yielded: write the output
        atomically (the CLI does) if a partial result must never be seen. progress(done, total) is called as
        (channel, block) stream sets are decoded. The samples equal those of `decode`, bit for bit."""
        vqfile = data if isinstance(data, VQFile) else read_file(data)
        source = _FileIndices(self, vqfile, layers, progress)
        g = vqfile.geometry
        return g.sample_rate, g.channels, g.num_samples, self.render_blocks(source, g.sample_rate, g.num_samples)

    def decode(self, data: "bytes | VQFile", layers: int | None = None, progress: Progress | None = None
               ) -> tuple[np.ndarray, int]:
        """.vq bytes (or a parsed file) -> (samples float32 (T, C) at the input's rate, sample rate in Hz).

        Decodes every index stream first (so a damaged file is refused before any audio is rendered; the
        int16 indices are 1/40 of the float32 output at 16 kHz), then renders chunk by chunk into the one
        output array. For long files prefer `decode_blocks`, whose memory does not grow with the length."""
        vqfile = data if isinstance(data, VQFile) else read_file(data)
        indices = self.decode_indices(vqfile, layers, progress, compact=True)
        g = vqfile.geometry
        out = np.empty((g.num_samples, g.channels), np.float32)
        pos = 0
        for block in self.render_blocks(indices, g.sample_rate, g.num_samples):
            out[pos:pos + len(block)] = block
            pos += len(block)
        return out, g.sample_rate

    @torch.no_grad()
    def sample(self, seconds: float, seed: int = 0, layers: int | None = None) -> np.ndarray:
        """Draw `layers` index sequences from the prior (seeded) and decode them -> float32 (T,) at 16 kHz."""
        s = self._check_quality(layers)
        frames = max(1, int(round(seconds * SAMPLE_RATE / self.hop)))
        indices = self.prior.sample(s, frames, seed)[None]  # (1, s, frames)
        return np.concatenate(list(self.render_blocks(indices, SAMPLE_RATE, frames * self.hop)))[:, 0]


class _Counter:
    """Passes blocks through and counts their samples (n)."""

    def __init__(self, blocks: Iterable[np.ndarray]) -> None:
        self.it, self.n = iter(blocks), 0

    def __iter__(self) -> "_Counter":
        return self

    def __next__(self) -> np.ndarray:
        b = next(self.it)
        self.n += len(b)
        return b


def _digest(indices: torch.Tensor) -> bytes:
    """SHA-256 of an integer index tensor's values (as contiguous int16), for `encode(verify=True)`."""
    return hashlib.sha256(indices.to(torch.int16).contiguous().numpy().tobytes()).digest()


class _FileIndices:
    """The indices of a parsed audio file, decoded one coded block (segment) at a time when asked for.

    The constructor checks the file against the codec (`AudioCodec._check_file`: modality, models, decode
    limits, stream counts and lengths) before anything is allocated or decoded.

    Attributes:
        shape: (C, s, N): channels, stages decoded (min(layers, layers in the file)), frames.
        bounds: [(b0, b1), ...] frame range of each coded block, in order (the file's SEGMENT_TABLE).
    """

    def __init__(self, codec: AudioCodec, vqfile: VQFile, layers: int | None,
                 progress: Progress | None = None) -> None:
        frames, self.bounds = codec._check_file(vqfile)
        s = check_layers(layers, vqfile.layers)
        c = vqfile.geometry.channels
        self.shape = (c, s, frames)
        self._prior = codec.prior
        self._streams = [vqfile.streams(k) for k in range(1, s + 1)]  # references to the file's payloads
        self._starts = [b0 for b0, _ in self.bounds]
        self._cache: dict[int, torch.Tensor] = {}
        self._progress, self._done = progress, 0

    def block(self, j: int) -> torch.Tensor:
        """Decode coded block j of every channel -> (C, s, b1 - b0) int16 (not cached)."""
        c, s, _ = self.shape
        b0, b1 = self.bounds[j]
        nb = len(self.bounds)
        out = torch.empty(c, s, b1 - b0, dtype=torch.int16)
        for ch in range(c):
            i = ch * nb + j  # streams are channel-major
            out[ch] = decode_stages(self._prior, [self._streams[k][i] for k in range(s)], (b1 - b0,))
            self._done += 1
            if self._progress:
                self._progress(min(self._done, c * nb), c * nb)
        _release_free_memory()
        return out

    def frames(self, lo: int, hi: int) -> torch.Tensor:
        """Frames [lo, hi) of every channel and stage -> (C, s, hi - lo) int64, 0 <= lo < hi <= N.

        Blocks that end at or before `lo` are released first, so a walk forward (lo never decreasing, as
        `render_blocks` walks) holds only the blocks one request spans; a walk back decodes a block again."""
        for j in [j for j in self._cache if self.bounds[j][1] <= lo]:
            del self._cache[j]
        j0 = bisect.bisect_right(self._starts, lo) - 1
        j1 = bisect.bisect_left(self._starts, hi)  # blocks starting before hi
        parts = []
        for j in range(j0, j1):
            if j not in self._cache:
                self._cache[j] = self.block(j)
            b0, b1 = self.bounds[j]
            parts.append(self._cache[j][:, :, max(lo, b0) - b0:min(hi, b1) - b0])
        return (torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]).long()
