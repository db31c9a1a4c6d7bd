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
    data = tiny_audio_codec.encode(x, rate, verify=True)
    f = read_file(data)
    assert (f.geometry.sample_rate, f.geometry.channels, f.geometry.num_samples) == (rate, channels, len(x))
    y, r = tiny_audio_codec.decode(data)
    assert r == rate and y.shape == x.shape and y.dtype == np.float32


def test_mono_input_of_shape_t(tiny_audio_codec, make_audio):
    x = make_audio(0.5)[:, 0]
    y, _ = tiny_audio_codec.decode(tiny_audio_codec.encode(x, 16000))
    assert y.shape == (len(x), 1)


def test_chunk_size_does_not_change_indices_or_samples(tiny_audio_weights, make_audio):
    """Encoder and decoder chunks (with halos) give what a whole-clip pass gives."""
    paths = (tiny_audio_weights / "audio_vqvae.safetensors", tiny_audio_weights / "audio_prior.safetensors")
    whole = AudioCodec(*paths, chunk_seconds=100.0)
    small = AudioCodec(*paths, chunk_seconds=0.23)
    x = make_audio(2.1, 16000, 1, seed=3)
    data = whole.encode(x, 16000)
    assert small.encode(x, 16000) == data  # the same indices, so the same bytes
    a, _ = whole.decode(data)
    b, _ = small.decode(data)
    assert np.abs(a - b).max() * 32768 <= 1.0  # within 1 LSB of 16-bit


def test_streamed_input_equals_array_input(tiny_audio_codec, make_audio):
    x = make_audio(1.1, 44100, 2, seed=4)
    blocks = AudioStream(44100, 2, (x[i:i + 777] for i in range(0, len(x), 777)))
    assert tiny_audio_codec.encode(blocks) == tiny_audio_codec.encode(x, 44100)


def test_fewer_layers(tiny_audio_codec, make_audio):
    x = make_audio(0.8, seed=5)
    data = tiny_audio_codec.encode(x, 16000)
    full = tiny_audio_codec.decode_indices(data)
    for n in (1, 2):
        assert torch.equal(tiny_audio_codec.decode_indices(truncate(data, n)), full[:, :n])
        assert torch.equal(tiny_audio_codec.decode_indices(data, n), full[:, :n])
    assert len(truncate(data, 1)) < len(data)


def test_bad_audio_is_refused(tiny_audio_codec, make_audio):
    x = make_audio(0.2)
    x[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tiny_audio_codec.encode(x, 16000)
    with pytest.raises(ValueError, match="empty"):
        tiny_audio_codec.encode(np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(ValueError, match="quality"):
        tiny_audio_codec.encode(make_audio(0.2), 16000, quality=4)
    with pytest.raises(ValueError, match="float"):
        tiny_audio_codec.encode(np.zeros((100, 1), np.int16), 16000)


def test_clipped_input_is_coded_as_it_is(tiny_audio_codec, make_audio):
    x = np.clip(make_audio(0.5) * 10, -1, 1)
    y, _ = tiny_audio_codec.decode(tiny_audio_codec.encode(x, 16000))
    assert y.shape == x.shape


def test_corruption_raises_format_errors_only(tiny_audio_codec, make_audio):
    data = bytearray(tiny_audio_codec.encode(make_audio(0.4), 16000))
    rng = np.random.default_rng(0)
    for _ in range(30):
        bad = bytearray(data)
        bad[int(rng.integers(0, len(bad)))] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(VQFormatError):
            tiny_audio_codec.decode(bytes(bad))
