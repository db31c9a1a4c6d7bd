"""Range coding of VQ indices under integer frequency tables, using `constriction`.

The prior (codec/) gives, for every index to code, an integer frequency table over the K codes.
This module turns each table into a `constriction` categorical model in one fixed way and
range-codes the indices with `constriction.stream.queue.RangeEncoder` / `RangeDecoder`
(32-bit words, 24-bit probability precision).

Frequency tables (`freqs`): numpy integer array of shape (n, K), n >= 0, 2 <= K <= MAX_ALPHABET,
every entry >= 1 and every row sum <= MAX_ROW_SUM = 2**24. Violations are caller bugs and raise
ValueError (never VQFormatError).

Why the indices decode exactly on every machine
-----------------------------------------------
The table is passed to constriction as `freqs.astype(float64)` -- the integer counts themselves,
not normalised. Every count and every partial row sum is an integer <= 2**24, so it is exactly
representable in float64 and every float64 addition constriction does on them is exact.
constriction's `Categorical(perfect=False)` model family builds, per row, its lazy leaky model
(`LazyContiguousCategoricalEntropyModel::from_floating_point_probabilities_fast`, constriction
0.5 source, src/stream/model/categorical/lazy_contiguous.rs) with

    scale      = (2**24 - K) / rowsum                     one correctly rounded f64 division
    cdf(i)     = trunc(sum(freqs[:i]) * scale) + i        one correctly rounded f64 product,
                                                          truncating float->int cast
    cdf(K)     = 2**24

i.e. IEEE-754 basic operations on exact inputs in a fixed order (Rust neither reorders float
operations nor contracts them into FMAs). float64 arrays are used as f64 (the Python binding
does not down-cast them to f32). So encoder and decoder build bit-identical integer CDFs on any
IEEE-754 machine, and range coding itself is integer arithmetic. `test_entropy.py` checks this
formula against constriction by probing its decoder at CDF boundaries, and pins the exact bytes
of a reference stream, to catch any change of this behaviour in a constriction upgrade.

Stream bytes: `RangeEncoder.get_compressed()` (uint32 words) written little-endian; a stream is
therefore a multiple of 4 bytes long. No symbol count is stored: the decoder knows how many
indices to decode from the header (image size, stage count) and the prior.
"""
from __future__ import annotations

import math
from typing import Union

import numpy as np
import constriction

from .errors import VQFormatError

__all__ = [
    "MAX_ROW_SUM",
    "MAX_ALPHABET",
    "IndexEncoder",
    "IndexDecoder",
    "cross_entropy_bits",
    "coded_bits",
    "coded_bits_of_rows",
    "min_bits_per_symbol",
    "max_symbols",
]

MAX_ROW_SUM = 1 << 24
"""Upper bound on each frequency table's row sum (keeps every count and partial sum exact in
float64 and every probability >= 2**-24, constriction's precision)."""
MAX_ALPHABET = 1 << 16
"""Upper bound on K (we use K = 512; constriction's own limit is below 2**24 - 1)."""

_BytesLike = Union[bytes, bytearray, memoryview]

SEAL_WORDS = 2
"""Words the coder's 64-bit state can add when a stream is sealed (and the slack the bounds below allow)."""


def min_bits_per_symbol(max_freq: int, k: int) -> float:
    """A lower bound on the bits any one index costs under tables whose entries lie in [1, max_freq].

    The likeliest symbol of a row has probability at most p = max_freq / (max_freq + K - 1) (the other
    K - 1 entries are >= 1). constriction quantizes a row to widths trunc(cum * (2^24 - K) / rowsum) + i
    out of 2^24, so the width of a symbol exceeds f * 2^24 / rowsum by at most 2 units (3 with a rounding
    of the float product at an integer): q <= p + 2^-22. Every index therefore costs at least
    -log2(min(1, p + 2^-22)) bits. (Image and audio priors: K = 512,
    max_freq = exp_lut[0] = 2^15: 0.0223 bits; from the bare contract, max_freq = 2^24 - K + 1, only
    4.4e-5 bits.)
    """
    k, max_freq = int(k), int(max_freq)
    if k < 2 or max_freq < 1:
        raise ValueError(f"need K >= 2 and max_freq >= 1, got K={k}, max_freq={max_freq}")
    q = min(1.0, max_freq / (max_freq + k - 1) + 2.0**-22)
    return max(0.0, -math.log2(q))


def max_symbols(num_bytes: int, min_bits: float) -> int:
    """The most indices a valid stream of `num_bytes` bytes can hold if each costs >= min_bits bits.

    A range coder with a 64-bit state emits a 32-bit word each time its range falls below 2^32, so the
    information content I of everything coded into a stream of W words satisfies I <= 32 * (W + 2)
    (the state holds at most 64 bits that were never emitted). n indices of >= min_bits bits each thus need
    n * min_bits <= 32 * (W + 2). For safety the bound used is twice that: n <= 64 * (W + 2) / min_bits,
    so no valid stream is refused even if the per-symbol bound were off by a factor of 2.
    """
    if min_bits <= 0:
        return 1 << 62
    words = -(-int(num_bytes) // 4)
    return int(64 * (words + SEAL_WORDS) / min_bits) + 1


def _model_family() -> "constriction.stream.model.Categorical":
    # perfect=False: the lazy "fast" quantisation described in the module docstring. It must be
    # the same on both sides; passing it explicitly protects us from constriction's defaults.
    return constriction.stream.model.Categorical(perfect=False)


def _checked_freqs(freqs: np.ndarray) -> np.ndarray:
    """Validate a frequency table; returns it as C-contiguous float64 (exact copy of the ints).

    Args:
        freqs: integer array (n, K).
    Returns:
        float64 array (n, K), C-contiguous (constriction requires contiguity).
    Raises:
        TypeError / ValueError: if the table breaks the documented bounds.
    """
    if not isinstance(freqs, np.ndarray):
        raise TypeError(f"freqs must be a numpy array, got {type(freqs).__name__}")
    if freqs.dtype == np.bool_ or not np.issubdtype(freqs.dtype, np.integer):
        raise TypeError(f"freqs must have an integer dtype (int64), got {freqs.dtype}")
    if freqs.ndim != 2:
        raise ValueError(f"freqs must have shape (n, K), got shape {freqs.shape}")
    n, k = freqs.shape
    if not 2 <= k <= MAX_ALPHABET:
        raise ValueError(f"alphabet size K={k} is outside 2..{MAX_ALPHABET}")
    if n:
        lo, hi = freqs.min(), freqs.max()
        if lo < 1:
            raise ValueError(f"every frequency must be >= 1, got {lo}")
        if hi > MAX_ROW_SUM:
            raise ValueError(f"row sums must be <= 2**24, got an entry of {hi}")
        # entries <= 2**24 and K <= 2**16, so the int64 sum cannot overflow.
        worst = freqs.sum(axis=1, dtype=np.int64).max()
        if worst > MAX_ROW_SUM:
            raise ValueError(f"row sums must be <= 2**24 = {MAX_ROW_SUM}, got {worst}")
    return np.ascontiguousarray(freqs, dtype=np.float64)


def _checked_symbols(symbols: np.ndarray, n: int, k: int) -> np.ndarray:
    """Validate indices against a table of shape (n, k); returns them as int32 (n,)."""
    if not isinstance(symbols, np.ndarray):
        raise TypeError(f"symbols must be a numpy array, got {type(symbols).__name__}")
    if symbols.dtype == np.bool_ or not np.issubdtype(symbols.dtype, np.integer):
        raise TypeError(f"symbols must have an integer dtype, got {symbols.dtype}")
    if symbols.shape != (n,):
        raise ValueError(f"symbols must have shape ({n},) to match freqs, got {symbols.shape}")
    if n and (symbols.min() < 0 or symbols.max() >= k):
        raise ValueError(f"symbols must lie in 0..{k - 1}, got range {symbols.min()}..{symbols.max()}")
    return np.ascontiguousarray(symbols, dtype=np.int32)


def _words_to_bytes(words: np.ndarray) -> bytes:
    """uint32 words (native order) -> little-endian bytes."""
    return np.asarray(words, dtype=np.uint32).astype("<u4", copy=False).tobytes()


def _bytes_to_words(data: bytes) -> np.ndarray:
    """Little-endian bytes (length multiple of 4) -> native uint32 words (a fresh array)."""
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


class IndexEncoder:
    """Range-encodes indices, batch after batch, into one stream.

    Usage: call `encode` for each batch in exactly the order the decoder will decode them
    (grouping into batches does not matter, only the order of the symbols), then `finish`.
    """

    def __init__(self) -> None:
        self._model = _model_family()
        self._coder = constriction.stream.queue.RangeEncoder()
        self._count = 0
        self._finished = False

    @property
    def num_symbols(self) -> int:
        """Number of indices encoded so far."""
        return self._count

    def encode(self, symbols: np.ndarray, freqs: np.ndarray) -> None:
        """Append `symbols` to the stream.

        Args:
            symbols: integer array (n,), each in 0..K-1.
            freqs: integer array (n, K); row i is the frequency table for symbols[i]
                (entries >= 1, row sums <= 2**24).
        """
        if self._finished:
            raise RuntimeError("IndexEncoder.encode() called after finish(); use a new encoder")
        f = _checked_freqs(freqs)
        s = _checked_symbols(symbols, f.shape[0], f.shape[1])
        if s.size == 0:
            return
        self._coder.encode(s, self._model, f)
        self._count += int(s.size)

    def finish(self) -> bytes:
        """Seal the stream; returns its bytes (a multiple of 4; empty if nothing was encoded).

        Calling `finish` again returns the same bytes; `encode` is not allowed afterwards.
        """
        self._finished = True
        return _words_to_bytes(self._coder.get_compressed())


class IndexDecoder:
    """Decodes indices from a stream written by `IndexEncoder`.

    Call `decode` with the same sequence of tables (any grouping) the encoder used, then
    `check_finished`.

    A range decoder turns almost *any* words into *some* symbols (a near-optimal code has
    almost no redundancy), so a damaged stream usually decodes to garbage without error; the
    container's CRC is the real guard. On top of that, with `verify=True` (default) the decoder
    re-encodes everything it decodes and `check_finished` requires the result to equal the
    input byte for byte. Measured: this catches ~99% of single-bit flips in a stream, every
    truncation and appended word tried, and ~95% of decodes with a wrong prior. It costs one
    extra range encode, about as much as the decode itself (tens of ms for the 6144 indices
    of one stage of a 768x512 image, K=512, on a 2-core CPU) -- small next to the prior.

    A stream that runs dry is noticed at once, in the `decode` call during which it does, not at
    `check_finished`: constriction's decoder reads zeros past the end of its data, so without this a
    short stream would cost the work of decoding every index the caller asks for. With `verify`, the
    re-encoded stream (sealed, `num_words`) may not exceed the input by more than the seal (SEAL_WORDS);
    without, the information of the decoded indices (a lower bound, as in `min_bits_per_symbol`) may not
    exceed 32 * (words + SEAL_WORDS) + 64 bits. Both only refuse streams `check_finished` would refuse.

    Args:
        data: the stream bytes (bytes, bytearray or memoryview).
        verify: re-encode and compare in `check_finished` (otherwise only constriction's cheap
            `maybe_exhausted` test is done).
    Raises:
        VQFormatError: if the stream length is not a multiple of 4.
    """

    def __init__(self, data: _BytesLike, *, verify: bool = True) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes-like, got {type(data).__name__}")
        raw = bytes(data)
        if len(raw) % 4:
            raise VQFormatError(
                f"range-coded stream is {len(raw)} bytes, not a multiple of 4: the stream is "
                f"corrupted"
            )
        self._words = _bytes_to_words(raw)
        self._model = _model_family()
        try:
            self._coder = constriction.stream.queue.RangeDecoder(self._words)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - includes pyo3 PanicException
            raise VQFormatError(f"cannot read range-coded stream ({exc}): the stream is corrupted") from exc
        self._check = constriction.stream.queue.RangeEncoder() if verify else None
        self._count = 0
        self._bits = 0.0  # without verify: a lower bound on the information decoded so far

    def _ran_dry(self) -> str | None:
        """Why the stream cannot hold what was decoded so far (None while it still can)."""
        if self._check is not None:
            # num_words() = words of the re-encoded stream if it were sealed now; the final stream is at
            # least this minus the seal, so more than SEAL_WORDS words over the input can never match it.
            if self._check.num_words() > self._words.size + SEAL_WORDS:
                return f"re-encoding needs more than {4 * (self._words.size + SEAL_WORDS)} bytes"
        elif self._bits > 32.0 * (self._words.size + SEAL_WORDS) + 64.0:
            return f"{self._bits:.0f} bits of indices do not fit in {self._words.size} words"
        return None

    @property
    def num_symbols(self) -> int:
        """Number of indices decoded so far."""
        return self._count

    def decode(self, freqs: np.ndarray) -> np.ndarray:
        """Decode the next n indices.

        Args:
            freqs: integer array (n, K), the same tables the encoder used for these indices.
        Returns:
            int64 array (n,), each in 0..K-1.
        Raises:
            VQFormatError: if constriction reports a problem with the data.
            TypeError / ValueError: if `freqs` breaks the documented bounds (caller bug).
        """
        f = _checked_freqs(freqs)
        n, k = f.shape
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        try:
            out = self._coder.decode(self._model, f)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - includes pyo3 PanicException
            raise VQFormatError(
                f"range decoding failed after {self._count} indices ({exc}): the stream is corrupted"
            ) from exc
        out = np.asarray(out, dtype=np.int64)
        if out.shape != (n,) or (out.size and (out.min() < 0 or out.max() >= k)):
            raise VQFormatError("range decoder produced out-of-range indices: the stream is corrupted")
        if self._check is not None:
            self._check.encode(out.astype(np.int32), self._model, f)
        else:
            p = f[np.arange(n), out] / f.sum(axis=1) + 2.0**-22  # as in min_bits_per_symbol
            self._bits += float(-np.log2(np.minimum(p, 1.0)).sum())
        self._count += n
        why = self._ran_dry()
        if why is not None:
            raise VQFormatError(
                f"range-coded stream is too short: it ran dry after {self._count} indices ({why}): the "
                f"stream is truncated or corrupted, or was decoded with a different model"
            )
        return out

    def check_finished(self) -> None:
        """Raise VQFormatError if the stream is not exactly what encoding the decoded indices gives.

        With `verify=False` this only uses constriction's `maybe_exhausted`, which notices
        unread data only when at least two 32-bit words are left over.
        """
        if self._check is None:
            if not self._coder.maybe_exhausted():
                raise VQFormatError(
                    f"range-coded stream has unread data after {self._count} indices: the "
                    f"stream is corrupted or was decoded with a different model"
                )
            return
        again = self._check.get_compressed()
        if again.size == self._words.size and np.array_equal(again, self._words):
            return
        if again.size < self._words.size:
            what = f"has {4 * (self._words.size - again.size)} bytes of unread data"
        elif again.size > self._words.size:
            what = f"is {4 * (again.size - self._words.size)} bytes too short"
        else:
            what = "does not match the decoded indices"
        raise VQFormatError(
            f"range-coded stream {what} after {self._count} indices: the stream is corrupted "
            f"or was decoded with a different model"
        )


def cross_entropy_bits(symbols: np.ndarray, freqs: np.ndarray) -> float:
    """Ideal code length of `symbols` under the tables, in bits: sum_i -log2(f[i, s_i] / rowsum_i).

    Args:
        symbols: integer array (n,).
        freqs: integer array (n, K), same bounds as for encoding.
    Returns:
        float64 number of bits (0.0 for n = 0). The real stream is at most a few words longer
        plus constriction's quantisation loss (see tests for measured overhead).
    """
    f = _checked_freqs(freqs)
    s = _checked_symbols(symbols, f.shape[0], f.shape[1])
    if s.size == 0:
        return 0.0
    picked = f[np.arange(s.size), s]
    return float(-np.sum(np.log2(picked / f.sum(axis=1))))


def coded_bits(symbols: np.ndarray, cum_below: np.ndarray, freq: np.ndarray, row_sum: np.ndarray,
               alphabet: int) -> float:
    """Information content, in bits, of symbols under the integer CDFs constriction builds from their rows
    (module docstring: cdf(i) = trunc(cum_i * (2^24 - K) / rowsum) + i, cdf(K) = 2^24).

    A range-coded stream of exactly these symbols holds this many bits plus at most the seal (the
    encoder's choice between coding modes uses it to skip coding a mode that cannot win; nothing that
    decodes depends on it).

    Args:
        symbols: int64 (n,), each in 0..alphabet-1.
        cum_below: int64 (n,), the sum of each row's counts below its symbol.
        freq: int64 (n,), each row's count of its symbol (>= 1).
        row_sum: int64 (n,), each row's sum (<= 2^24).
        alphabet: K, the row length.
    Returns:
        float64 bits (0.0 for n = 0).
    """
    if symbols.size == 0:
        return 0.0
    scale = (MAX_ROW_SUM - int(alphabet)) / row_sum.astype(np.float64)
    lo = np.trunc(cum_below * scale) + symbols
    hi = np.where(symbols == alphabet - 1, float(MAX_ROW_SUM), np.trunc((cum_below + freq) * scale) + symbols + 1)
    return float(np.sum(24.0 - np.log2(hi - lo)))


def coded_bits_of_rows(symbols: np.ndarray, freqs: np.ndarray) -> float:
    """`coded_bits` of symbols (n,) under full integer tables (n, K) (as passed to `IndexEncoder.encode`)."""
    n, k = freqs.shape
    if n == 0:
        return 0.0
    rows = np.arange(n)
    sym = np.asarray(symbols, dtype=np.int64)
    cum = np.cumsum(freqs, axis=1)
    own = freqs[rows, sym]
    return coded_bits(sym, cum[rows, sym] - own, own, cum[:, -1], k)
