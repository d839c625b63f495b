"""Damaged copies of a file, for tests that every reader refuses them with rewheel's errors."""

from __future__ import annotations

import random
from collections.abc import Iterator


def damaged(data: bytes, seed: int, count: int = 60) -> Iterator[bytes]:
    """``data`` cut short at many points, with bytes flipped, with bytes inserted, and garbage:
    what a broken or hostile index can serve under an archive's name. The same every run."""
    rng = random.Random(seed)
    for i in range(1, 17):
        yield data[: len(data) * i // 17]
    for _ in range(count):
        out = bytearray(data)
        kind = rng.randrange(3)
        if kind == 0:
            for _ in range(rng.randrange(1, 12)):
                out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            at = rng.randrange(len(out))
            out[at:at] = rng.randbytes(rng.randrange(1, 40))
        else:
            out = bytearray(rng.randbytes(rng.randrange(0, 400)))
        yield bytes(out)
