"""The audio pipeline end to end on a tiny model: exact indices, lengths, rates and channels restored,
chunking invisible, truncation to fewer layers, bad input refused."""
import numpy as np
import pytest
import torch

from vqcodec.audio.codec import AudioCodec, AudioStream
from vqcodec.bitstream import VQFormatError, read_file, truncate


@pytest.mark.parametrize("seconds,rate,channels", [(1.3, 16000, 1), (0.7, 22050, 2), (0.001, 8000, 1)])
def test_round_trip_restores_length_rate_channels(tiny_audio_codec, seconds, rate, channels, make_audio):
    x = make_audio(seconds, rate, channels, seed=1)
    data = tiny_audio_codec.encode(x, sample_rate=rate, verify=True)
    f = read_file(data)
    assert (f.geometry.sample_rate, f.geometry.channels, f.geometry.num_samples) == (rate, channels, len(x))
    y, r = tiny_audio_codec.decode(data)
    assert r == rate and y.shape == x.shape and y.dtype == np.float32


def test_mono_input_of_shape_t(tiny_audio_codec, make_audio):
    x = make_audio(0.5)[:, 0]
    y, _ = tiny_audio_codec.decode(tiny_audio_codec.encode(x, sample_rate=16000))
    assert y.shape == (len(x), 1)


def test_chunk_size_does_not_change_indices_or_samples(tiny_audio_weights, make_audio):
    """Encoder and decoder chunks (with halos) give what a whole-clip pass gives."""
    paths = (tiny_audio_weights / "audio_vqvae.safetensors", tiny_audio_weights / "audio_prior.safetensors")
    whole = AudioCodec(*paths, chunk_seconds=100.0)
    small = AudioCodec(*paths, chunk_seconds=0.23)
    x = make_audio(2.1, 16000, 1, seed=3)
    data = whole.encode(x, sample_rate=16000)
    assert small.encode(x, sample_rate=16000) == data  # the same indices, so the same bytes
    a, _ = whole.decode(data)
    b, _ = small.decode(data)
    assert np.abs(a - b).max() * 32768 <= 1.0  # within 1 LSB of 16-bit


def test_streamed_input_equals_array_input(tiny_audio_codec, make_audio):
    x = make_audio(1.1, 44100, 2, seed=4)
    blocks = AudioStream(44100, 2, (x[i:i + 777] for i in range(0, len(x), 777)))
    assert tiny_audio_codec.encode(blocks) == tiny_audio_codec.encode(x, sample_rate=44100)


def test_fewer_layers(tiny_audio_codec, make_audio):
    x = make_audio(0.8, seed=5)
    data = tiny_audio_codec.encode(x, sample_rate=16000)
    full = tiny_audio_codec.decode_indices(data)
    for n in (1, 2):
        assert torch.equal(tiny_audio_codec.decode_indices(truncate(data, n)), full[:, :n])
        assert torch.equal(tiny_audio_codec.decode_indices(data, n), full[:, :n])
    assert len(truncate(data, 1)) < len(data)


def test_bad_audio_is_refused(tiny_audio_codec, make_audio):
    x = make_audio(0.2)
    x[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tiny_audio_codec.encode(x, sample_rate=16000)
    with pytest.raises(ValueError, match="empty"):
        tiny_audio_codec.encode(np.zeros((0, 1), np.float32), sample_rate=16000)
    with pytest.raises(ValueError, match="quality"):
        tiny_audio_codec.encode(make_audio(0.2), sample_rate=16000, quality=4)
    with pytest.raises(ValueError, match="float"):
        tiny_audio_codec.encode(np.zeros((100, 1), np.int16), sample_rate=16000)


def test_clipped_input_is_coded_as_it_is(tiny_audio_codec, make_audio):
    x = np.clip(make_audio(0.5) * 10, -1, 1)
    y, _ = tiny_audio_codec.decode(tiny_audio_codec.encode(x, sample_rate=16000))
    assert y.shape == x.shape


def test_corruption_raises_format_errors_only(tiny_audio_codec, make_audio):
    data = bytearray(tiny_audio_codec.encode(make_audio(0.4), sample_rate=16000))
    rng = np.random.default_rng(0)
    for _ in range(30):
        bad = bytearray(data)
        bad[int(rng.integers(0, len(bad)))] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(VQFormatError):
            tiny_audio_codec.decode(bytes(bad))


def _codecs(tiny_audio_weights, *chunk_seconds):
    paths = (tiny_audio_weights / "audio_vqvae.safetensors", tiny_audio_weights / "audio_prior.safetensors")
    return [AudioCodec(*paths, chunk_seconds=c) for c in chunk_seconds]


def test_same_samples_whatever_chunk_and_block_sizes(tiny_audio_weights, make_audio):
    """Issue 11: a file decodes identically (bit for bit) whatever chunk size the decoder renders with, and
    the coded block size changes the bytes but not the samples; decode_blocks gives what decode gives."""
    x = make_audio(1.6, 22050, 2, seed=6)
    codecs = _codecs(tiny_audio_weights, 100.0, 0.23, 0.7)
    files = []
    for block_frames in (100, codecs[0].block_frames):
        codecs[0].block_frames = block_frames
        files.append(codecs[0].encode(x, sample_rate=22050))
    assert files[0] != files[1] and len(read_file(files[0]).segment_frames) == 4
    ref, rate = codecs[0].decode(files[-1])
    assert rate == 22050 and ref.shape == x.shape
    for data in files:
        for codec in codecs:
            assert np.array_equal(codec.decode(data)[0], ref)
        r, c, n, blocks = codecs[1].decode_blocks(data)
        assert (r, c, n) == (22050, 2, len(x))
        assert np.array_equal(np.concatenate(list(blocks)), ref)


def test_lazy_decoding_holds_only_the_blocks_under_the_chunk(tiny_audio_weights, make_audio):
    """The decoder decodes each coded block when rendering reaches it and releases it after: however long
    the file, at most the blocks one chunk (plus halos) spans are held."""
    from vqcodec.audio.codec import _FileIndices

    codec, = _codecs(tiny_audio_weights, 0.3)
    codec.block_frames = 50
    data = codec.encode(make_audio(2.0, 16000, 1, seed=7), sample_rate=16000)
    vqfile = read_file(data)
    calls = []
    source = _FileIndices(codec, vqfile, None, lambda done, total: calls.append((done, total)))
    assert calls == []  # nothing decoded before rendering starts
    span = codec.chunk_frames + 2 * codec.dec_halo
    most = -(-span // codec.block_frames) + 1
    held = []
    for _ in codec.render_blocks(source, 16000, vqfile.geometry.num_samples):
        held.append(len(source._cache))
    nb = len(vqfile.segment_frames)
    assert nb >= 8 and max(held) <= most < nb
    assert calls == [(i, nb) for i in range(1, nb + 1)]  # every block decoded once, in order


def test_damaged_later_block(tiny_audio_weights, make_audio):
    """A stream damaged past the up-front checks: decode refuses before rendering; decode_blocks raises
    VQFormatError from the iteration, after the blocks before it."""
    from vqcodec.bitstream import Modality, write_file
    from vqcodec.bitstream.chunks import ChunkType

    codec, = _codecs(tiny_audio_weights, 0.3)
    codec.block_frames = 100
    f = read_file(codec.encode(make_audio(1.5, 16000, 1, seed=8), sample_rate=16000))
    streams = [f.streams(k) for k in range(1, f.layers + 1)]
    last = streams[0][-1]
    streams[0][-1] = bytes(b ^ 0x5A for b in last[:-4]) + last[-4:]  # same length, other symbols
    extra = [c for c in f.chunks if c.type == ChunkType.SEGMENT_TABLE]
    bad = write_file(Modality.AUDIO, f.components, f.geometry, streams, extra_chunks=extra)
    with pytest.raises(VQFormatError):
        codec.decode(bad)
    _, _, _, blocks = codec.decode_blocks(bad)
    got = 0
    with pytest.raises(VQFormatError):
        for b in blocks:
            got += len(b)
    assert got > 0


def test_encode_verify_catches_a_mismatch(tiny_audio_codec, make_audio, monkeypatch):
    """verify=True checks every block's decoded indices against what was coded (by digest, so the encoder
    never holds the whole clip's indices)."""
    from vqcodec.audio import codec as audio_codec

    x = make_audio(0.5, seed=9)
    assert tiny_audio_codec.encode(x, sample_rate=16000, verify=True) == tiny_audio_codec.encode(x, sample_rate=16000)
    real = audio_codec.decode_stages
    monkeypatch.setattr(audio_codec, "decode_stages", lambda *a, **k: (real(*a, **k) + 1) % 32)
    with pytest.raises(RuntimeError, match="verification failed"):
        tiny_audio_codec.encode(x, sample_rate=16000, verify=True)
