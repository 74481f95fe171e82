"""Checking compressed COCO RLE strings before pycocotools decodes them."""
from __future__ import annotations

import numpy as np

MAX_PIXELS = 2**32 - 1  # COCO RLE run lengths are 32-bit
_RLE_CHUNK = 1 << 17  # characters per rle_pixel_totals step (small arrays are reused, big ones page-fault)


def rle_pixel_totals(counts: list[str]) -> np.ndarray:
    """How many pixels each compressed RLE string covers (the sum of its runs); -1 where malformed.

    pycocotools decodes a string without checking that its runs cover the image: too long fails, too
    short silently leaves uninitialised memory in the mask. So imports check totals first, vectorised over
    all strings (a Python loop over 245k strings would double the import time), about a million
    characters at a time so the working arrays stay small and reused. The format is pycocotools'
    ``rleFrString``: per character 5 value bits (offset 48), 0x20 = more characters follow, 0x10 in the
    last character = negative, and from the fourth run on each value is a delta to the run two before.
    """
    totals = np.full(len(counts), -1, dtype=np.int64)
    usable = [i for i, s in enumerate(counts) if s and s.isascii()]
    start, size = 0, 0
    for end, i in enumerate(usable, 1):
        size += len(counts[i])
        if size >= _RLE_CHUNK or end == len(usable):
            chunk = usable[start:end]
            totals[chunk] = _chunk_totals([counts[i] for i in chunk])
            start, size = end, 0
    return totals


def _chunk_totals(strings: list[str]) -> np.ndarray:
    """``rle_pixel_totals`` of non-empty ASCII strings."""
    lengths = np.fromiter(map(len, strings), np.int64, len(strings))
    last_char = np.cumsum(lengths) - 1
    chars = np.frombuffer("".join(strings).encode("ascii"), np.uint8) - np.uint8(48)
    bad = np.zeros(len(strings), bool)
    invalid = np.flatnonzero(chars > 63)
    if invalid.size:
        bad[np.searchsorted(last_char, invalid)] = True
        chars[invalid] = 0
    ends = chars < 32
    unterminated = ~ends[last_char]
    if unterminated.any():
        bad |= unterminated
        ends[last_char] = True  # so no run carries on into the next string
    end_pos = np.flatnonzero(ends)
    values = ((chars[end_pos] << 3).view(np.int8) >> 3).astype(np.int64)  # last character: 5 bits, signed
    # Horner, from each run's last character back to its first. The buffer ends with a run's end, so the
    # index -1 reached from the very first run reads an end character and stops there too.
    longer = np.flatnonzero(~ends[end_pos - 1])
    back = 1
    while longer.size and back < 7:
        at = end_pos[longer] - back
        values[longer] = (values[longer] << 5) + (chars[at] & 31)
        longer = longer[~ends[at - 1]]
        back += 1
    if longer.size:  # 8 or more characters: far beyond a 32-bit run
        bad[np.searchsorted(last_char, end_pos[longer])] = True
    last_token = np.searchsorted(end_pos, last_char)
    per_string = np.diff(last_token, prepend=-1)
    first_token = last_token - per_string + 1
    step = np.ones(len(values), np.int64)
    step[first_token] = 1 - np.concatenate(([1], per_string[:-1]))
    j = np.cumsum(step)  # index of each run within its string
    odd = (j & 1).astype(bool)
    runs = values.copy()
    for parity in (odd, ~odd & (j >= 2)):  # runs 1, 3, 5, ... and 2, 4, 6, ... are deltas to the one before
        summed = np.cumsum(np.where(parity, values, 0))
        base = np.concatenate(([0], summed))[first_token]
        np.copyto(runs, summed - np.repeat(base, per_string), where=parity)
    out_of_range = np.flatnonzero((runs < 0) | (runs > MAX_PIXELS))
    if out_of_range.size:
        bad[np.searchsorted(last_token, out_of_range)] = True
    return np.where(bad, -1, np.add.reduceat(runs, first_token))
