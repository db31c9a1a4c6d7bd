"""Fuzzing vqcodec.decode (issue 13): every input ends in vqcodec.VQFormatError or a correct decode.

The cases are those of benchmarks/fuzz_decoder.py (which runs >= 100,000 of them), made from small valid
image and audio files of the tiny test models: every truncation, every single-bit flip of a small file,
and hypothesis-drawn bit flips, insertions, deletions, overwrites, random bytes, crafted headers with huge
sizes / layer counts / stream lengths, valid headers over garbage payloads, spliced streams, unknown
chunks, wrong model ids / hashes / format versions. Derandomized, so CI sees the same cases every run
(about 5,000 cases, some 40 s on one busy core).
"""
import importlib.util
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vqcodec import api, registry
from vqcodec.bitstream import ImageGeometry, AudioGeometry, Modality, write_file

_spec = importlib.util.spec_from_file_location(
    "fuzz_decoder", Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_decoder.py")
fz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fz)

FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def bases(tiny_all_weights):
    """Small valid files (3 images, a version-1 image, 3 audio clips) of the tiny models, with the process
    pointed at them for the module's tests."""
    import torch

    from vqcodec import registry

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny nets gain nothing from a second thread on a shared CPU
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VQCODEC_WEIGHTS_DIR", str(tiny_all_weights))
        registry._registry_for.cache_clear()
        registry._load_codec.cache_clear()
        files = fz.base_files()
        yield files
    torch.set_num_threads(threads)
    registry._registry_for.cache_clear()
    registry._load_codec.cache_clear()


def _check(data: bytes, what: str = "") -> str:
    outcome, detail = fz.run_case(data)
    assert outcome != "other exception", f"{what}: {detail}"
    return outcome


def test_base_files_decode(bases):
    assert len(bases) == 7
    assert all(_check(b) == "decoded" for b in bases)


def test_every_truncation(bases):
    for i, base in enumerate(bases):
        for n in range(len(base)):
            assert _check(base[:n], f"base {i} cut to {n}") != "decoded"
            _check(fz.fix_crc(base[:n]), f"base {i} cut to {n}, CRC fixed")


def test_every_single_bit_flip_of_a_small_file(bases):
    base = min(bases[:3], key=len)  # the 8 x 8 image
    for i in range(8 * len(base)):
        b = bytearray(base)
        b[i // 8] ^= 1 << (i % 8)
        assert _check(bytes(b), f"bit {i}") != "decoded"  # the CRC catches every single-bit flip
        _check(fz.fix_crc(bytes(b)), f"bit {i}, CRC fixed")


@settings(FUZZ, max_examples=1000)
@given(kind=st.sampled_from(sorted(fz.MUTATIONS)), which=st.integers(0, 6), seed=st.integers(0, 2**32 - 1))
def test_mutations(bases, kind, which, seed):
    _check(fz.make_case(kind, bases[which], seed), f"{kind} of base {which}, seed {seed}")


@settings(FUZZ, max_examples=300)
@given(which=st.integers(0, 6), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), min_size=1,
                                                max_size=4), crc=st.booleans())
def test_bit_flips(bases, which, flips, crc):
    b = bytearray(bases[which])
    for pos, bit in flips:
        b[pos % len(b)] ^= 1 << bit
    _check(fz.fix_crc(bytes(b)) if crc else bytes(b))


@settings(FUZZ, max_examples=300)
@given(head=st.sampled_from([b"", b"\x89VQC\x02\x00", b"\x89VQC\x02\x01", b"\x89VQC\x01\x00", b"\x89VQC\x03"]),
       body=st.binary(max_size=300), crc=st.booleans())
def test_random_bytes(bases, head, body, crc):
    data = head + body
    _check(fz.fix_crc(data) if crc else data)


@settings(FUZZ, max_examples=150)
@given(width=st.integers(1, 65535), height=st.integers(1, 65535), layers=st.integers(1, 12),
       words=st.lists(st.integers(0, 16), min_size=1, max_size=12), seed=st.integers(0, 2**32 - 1))
def test_crafted_image_headers(bases, width, height, layers, words, seed):
    """Valid files (CRC and all) of any declared size and layer count over short random streams."""
    rnd = random.Random(seed)
    codec = registry.default_codec("image")
    streams = [[fz._rand_bytes(rnd, 4 * words[k % len(words)])] for k in range(layers)]
    _check(write_file(Modality.IMAGE, codec.components, ImageGeometry(width, height), streams))


@settings(FUZZ, max_examples=200)
@given(rate=st.sampled_from([1, 100, 8000, 16000, 44100, 768000]), channels=st.integers(1, 4),
       samples=st.sampled_from([1, 319, 320, 16000, 10**6, 10**8, 2**32, 2**40]), layers=st.integers(1, 5),
       words=st.integers(0, 32), seed=st.integers(0, 2**32 - 1))
def test_crafted_audio_headers(bases, rate, channels, samples, layers, words, seed):
    rnd = random.Random(seed)
    codec = registry.default_codec("audio")
    streams = [[fz._rand_bytes(rnd, 4 * rnd.randrange(words + 1)) for _ in range(channels)]
               for _ in range(layers)]
    _check(write_file(Modality.AUDIO, codec.components, AudioGeometry(rate, channels, samples), streams))


def test_classify():
    assert fz.classify("CRC mismatch (stored 1, computed 2): the file is corrupted") == "CRC mismatch"
    assert fz.classify("range-coded stream is too short: it ran dry after 3 indices").startswith("stream ran dry")
