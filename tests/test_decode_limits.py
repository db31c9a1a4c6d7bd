"""A tiny file must not buy a huge decode (issue 13).

A file that declares a large image or a long clip but carries short streams is refused before the decoder
allocates or decodes anything for the declared size: stream lengths are checked against the grid first
(`vqcodec.coding.stages.check_stream_lengths`), a stream that runs dry stops the range decoder at once
(`IndexDecoder.decode`), and the declared size itself is limited (`vqcodec.api.MAX_DECODE_PIXELS`,
`MAX_DECODE_AUDIO_SAMPLES`). Memory is measured with tracemalloc peaks (numpy and Python allocations),
not wall time: before these checks, the 4000 x 4000 case below peaked at > 100 MB of traced memory (and
2.6 GB RSS with the shipped model).
"""
import time
import tracemalloc

import numpy as np
import pytest

import vqcodec
from vqcodec import api
from vqcodec.bitstream import AudioGeometry, ImageGeometry, IndexDecoder, IndexEncoder, Modality, StageSyntax, \
    VQFormatError, stage_syntax_chunk, \
    read_file, write_file
from vqcodec.bitstream.entropy import max_symbols, min_bits_per_symbol
from vqcodec.registry import default_codec
from vqcodec.coding.stages import min_bits_per_index

TRACED_LIMIT = 8 << 20  # bytes: a refusal may parse the file and build small objects, nothing per position




def _refusal(data: bytes) -> tuple[str, int, float]:
    """Decode `data`, which must be refused -> (message, traced peak bytes, seconds)."""
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(VQFormatError) as info:
            vqcodec.decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return str(info.value), peak, time.perf_counter() - t


@pytest.mark.parametrize("width,height", [(4000, 4000), (8000, 8000), (65535, 65535), (65535, 8), (65535, 100)])
def test_tiny_image_file_declaring_huge_size_is_refused_cheaply(tiny_weights, use_weights, width, height):
    """Also long thin grids (65535 x 8: 8192 positions in one row) whose few positions pass the stream-length
    check, so that decoding starts and the stream runs dry: the decode plan must not cost per group."""
    use_weights(tiny_weights)
    codec = default_codec("image")
    layers = [[b""]] * codec.max_layers
    for streams in ([[b""]], layers, [[bytes(8)]] + layers[1:]):
        data = write_file(Modality.IMAGE, codec.components, ImageGeometry(width, height), streams)
        assert len(data) < 200
        msg, peak, seconds = _refusal(data)
        assert peak < TRACED_LIMIT, (width, height, peak)
        assert seconds < 1.0, (width, height, seconds)
        assert "too short" in msg or "decode limit" in msg or "exceeds" in msg


def test_short_stream_is_refused_before_allocating_the_grid(tiny_weights, use_weights, make_image):
    """A valid file whose geometry is edited upwards (CRC recomputed) keeps its real streams: refused
    by the length check, cheaply, however large the declared size."""
    use_weights(tiny_weights)
    codec = default_codec("image")
    data = vqcodec.encode_image(make_image(32, 48, 0), quality=100)
    f = read_file(data)
    streams = [f.streams(k) for k in range(1, f.layers + 1)]
    for extra in ([], [stage_syntax_chunk(StageSyntax.DEPTH)]):  # as 0.2.0 read them, and as they are
        big = write_file(Modality.IMAGE, codec.components, ImageGeometry(6000, 6000), streams, extra_chunks=extra)
        msg, peak, _ = _refusal(big)
        assert "too short" in msg and peak < TRACED_LIMIT


def test_stream_that_runs_dry_stops_the_decoder_at_once():
    """Half a stream: the decoder raises during the group in which the data runs out, not at the end."""
    rng = np.random.default_rng(0)
    n, k, group = 20000, 64, 50
    freqs = rng.integers(1, 1000, (n, k))
    symbols = np.array([rng.choice(k, p=f / f.sum()) for f in freqs])
    enc = IndexEncoder()
    enc.encode(symbols, freqs)
    stream = enc.finish()
    for verify in (True, False):
        dec = IndexDecoder(stream[: len(stream) // 2 // 4 * 4], verify=verify)
        with pytest.raises(VQFormatError, match="ran dry"):
            for i in range(0, n, group):
                dec.decode(freqs[i:i + group])
        assert dec.num_symbols < 0.75 * n, (verify, dec.num_symbols)
        # the whole stream still decodes exactly, group by group
        dec = IndexDecoder(stream, verify=verify)
        out = np.concatenate([dec.decode(freqs[i:i + group]) for i in range(0, n, group)])
        dec.check_finished()
        assert np.array_equal(out, symbols)


@pytest.mark.parametrize("k,top", [(512, 1 << 15), (32, 1 << 15), (2, 1 << 15), (512, (1 << 24) - 511)])
def test_length_bound_never_refuses_the_most_compressible_stream(k, top):
    """The likeliest symbol at every position, under the most peaked rows: the stream must fit the bound
    (even without its safety factor of 2), and the early stop must not fire while decoding it."""
    bits = min_bits_per_symbol(top, k)
    for n in (1, 100, 5000, 200000):
        freqs = np.ones((n, k), dtype=np.int64)
        freqs[:, 0] = top
        enc = IndexEncoder()
        enc.encode(np.zeros(n, dtype=np.int64), freqs)
        stream = enc.finish()
        words = len(stream) // 4
        assert n * bits <= 32 * (words + 2), (k, n, len(stream))
        assert n <= max_symbols(len(stream), bits)
        dec = IndexDecoder(stream)
        assert not dec.decode(freqs).any()
        dec.check_finished()


def test_min_bits_of_the_priors(tiny_weights):
    from vqcodec.image.prior_integer import load_integer_prior

    prior = load_integer_prior(tiny_weights / "image_prior.safetensors")
    top = int(prior.exp.lut.max())
    assert min_bits_per_index(prior) == min_bits_per_symbol(top, prior.codebook_size) > 0
    assert min_bits_per_symbol(1 << 15, 512) == pytest.approx(0.02232, abs=1e-4)


def test_pixel_limit(tiny_weights, use_weights, make_image, monkeypatch):
    use_weights(tiny_weights)
    data = vqcodec.encode_image(make_image(40, 56, 1), quality=2)
    assert vqcodec.decode(data).size == (56, 40)
    monkeypatch.setattr(api, "MAX_DECODE_PIXELS", 56 * 40 - 1)
    with pytest.raises(VQFormatError, match="MAX_DECODE_PIXELS"):
        vqcodec.decode(data)
    monkeypatch.setattr(api, "MAX_DECODE_PIXELS", None)
    assert vqcodec.decode(data).size == (56, 40)


def _audio_file(codec, geometry, streams_per_layer, layers=1):
    return write_file(Modality.AUDIO, codec.components, geometry, [[b""] * streams_per_layer] * layers)


@pytest.mark.parametrize("geometry", [
    AudioGeometry(16000, 1, 16000 * 3600 * 10),        # 10 hours: over the default sample limit
    AudioGeometry(1, 1, 1 << 24),                       # 1 Hz: 2^24 samples are 2.7e11 at 16 kHz
    AudioGeometry(48000, 255, 1 << 40),                 # the format's largest clip
    AudioGeometry(16000, 2, 16000 * 600),               # 10 minutes, within the limit, empty streams
])
def test_tiny_audio_file_declaring_long_clip_is_refused_cheaply(tiny_all_weights, use_weights, geometry):
    use_weights(tiny_all_weights)
    codec = default_codec("audio")
    data = _audio_file(codec, geometry, geometry.channels)
    msg, peak, seconds = _refusal(data)
    assert peak < TRACED_LIMIT and seconds < 5, (geometry, peak, seconds)
    assert "decode limit" in msg or "too short" in msg


def test_audio_sample_limit(tiny_all_weights, use_weights, make_audio, monkeypatch):
    use_weights(tiny_all_weights)
    x = make_audio(0.5, 16000, 2)
    data = vqcodec.encode_audio(x, 16000, quality=1)
    monkeypatch.setattr(api, "MAX_DECODE_AUDIO_SAMPLES", 2 * len(x) - 1)
    with pytest.raises(VQFormatError, match="MAX_DECODE_AUDIO_SAMPLES"):
        vqcodec.decode(data)
    monkeypatch.setattr(api, "MAX_DECODE_AUDIO_SAMPLES", 2 * len(x))
    y, rate = vqcodec.decode(data)
    assert y.shape == x.shape and rate == 16000
    # without a limit, the stream-length check still refuses a huge declared clip before allocating it
    monkeypatch.setattr(api, "MAX_DECODE_AUDIO_SAMPLES", None)
    msg, peak, _ = _refusal(_audio_file(default_codec("audio"), AudioGeometry(16000, 1, 1 << 40), 1))
    assert "too short" in msg and peak < TRACED_LIMIT
