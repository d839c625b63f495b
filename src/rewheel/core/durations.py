"""How long a build will take, before it runs: the weights of the scheduler's chains.

The bootstrap gives build slots to the longest chain of builds first; on a cold run (no record
of the same pin) it needs an estimate of each build's seconds, or long compiled builds (numpy,
scipy) start late and the whole run waits for them at the end. Two estimates, both pure:

- ``seconds_from_history``: an earlier build of the same project in this repository (another
  version, as after ``rewheel update``), the nearest version's;
- ``estimate_build_seconds``: from what the sdist holds, counted while it is extracted
  (``SourceCensus``, fed by ``build.extract``): compiled sources by kind, a native build system
  at its root, and its size.

An estimate only orders builds; it never decides what is built or how, and is never recorded.
A hostile sdist can make its own estimate as large as it likes (it gets a slot earlier); the
value is bounded (``MAX_ESTIMATE``) and the census counts what was really extracted, within
the extraction's own limits.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from packaging.version import InvalidVersion, Version

__all__ = [
    "COMPILED_KINDS",
    "MAX_ESTIMATE",
    "PastBuild",
    "SdistFeatures",
    "SourceCensus",
    "estimate_build_seconds",
    "seconds_from_history",
]

# The kind of compiled source by file suffix (lower case).
COMPILED_KINDS: Mapping[str, str] = {
    ".c": "c",
    ".cpp": "cpp",
    ".cc": "cpp",
    ".cxx": "cpp",
    ".c++": "cpp",
    ".pyx": "cython",
    ".f": "fortran",
    ".f77": "fortran",
    ".f90": "fortran",
    ".f95": "fortran",
    ".for": "fortran",
    ".rs": "rust",
    ".cu": "cuda",
}
# Files at the root of the source tree that say a native build system drives the build.
NATIVE_BUILD_FILES = frozenset({"meson.build", "CMakeLists.txt", "Cargo.toml"})
# Folders whose sources a build does not compile (tests, documentation, examples): their
# compiled sources are not counted (meson's sdist holds 900 C files of test cases and builds in
# a second). Compared in lower case.
NOT_BUILT_FOLDERS = frozenset(
    {
        "test",
        "tests",
        "testing",
        "testsuite",
        "test cases",
        "doc",
        "docs",
        "example",
        "examples",
        "benchmarks",
        "bench",
    }
)
# No estimate above this (the sandbox's default wall-clock limit): whatever an sdist holds.
MAX_ESTIMATE = 3600.0

# The estimate's coefficients, calibrated on 63 real builds of the langchain example on a 2-core
# machine (benchmarks/README.md, "The cold estimate"): seconds of a build that compiles nothing,
# seconds per MB of the whole sdist, and for each kind of compiled source the seconds per "unit",
# a unit being one file plus every 100 kB of it. Fortran and CUDA had no build to calibrate on:
# their weights are guesses (Fortran as C++; CUDA ten times C).
BASE_SECONDS = 0.4
SECONDS_PER_MB = 0.25
UNIT_KB = 100.0
SECONDS_PER_UNIT: Mapping[str, float] = {
    "c": 0.5,
    "cpp": 1.0,
    "cython": 4.5,
    "fortran": 1.0,
    "rust": 0.02,
    "cuda": 5.0,
}
NATIVE_BUILD_SECONDS = 1.5


@dataclass(frozen=True)
class SdistFeatures:
    """What an sdist holds, as far as its build's duration goes: counted once, while it is
    extracted. Sizes are the bytes really written."""

    total_bytes: int = 0
    files: int = 0
    compiled_bytes: Mapping[str, int] = field(default_factory=dict)  # kind -> bytes
    compiled_files: Mapping[str, int] = field(default_factory=dict)  # kind -> files
    native_build: frozenset[str] = frozenset()  # of NATIVE_BUILD_FILES, at the tree's root


class SourceCensus:
    """Counts an sdist's members as they are extracted (``build.extract`` calls ``file`` for
    each regular file written, with its member path and size): no second walk of the tree."""

    def __init__(self) -> None:
        self._bytes: Counter[str] = Counter()
        self._files: Counter[str] = Counter()
        self._native: set[str] = set()
        self.total_bytes = 0
        self.files = 0

    def file(self, parts: Sequence[str], size: int) -> None:
        """A regular file at member path ``parts`` (its components), ``size`` bytes."""
        self.total_bytes += size
        self.files += 1
        if not parts:
            return
        leaf = parts[-1]
        # The root of the tree is the archive's single top folder (``name-version/``), or the
        # archive's root: a build file one level down or at the top.
        if leaf in NATIVE_BUILD_FILES and len(parts) <= 2:
            self._native.add(leaf)
        dot = leaf.rfind(".")
        kind = COMPILED_KINDS.get(leaf[dot:].lower()) if dot > 0 else None
        if kind is None or any(p.lower() in NOT_BUILT_FOLDERS for p in parts[:-1]):
            return
        self._bytes[kind] += size
        self._files[kind] += 1

    def features(self) -> SdistFeatures:
        return SdistFeatures(
            total_bytes=self.total_bytes,
            files=self.files,
            compiled_bytes=dict(self._bytes),
            compiled_files=dict(self._files),
            native_build=frozenset(self._native),
        )


def estimate_build_seconds(features: SdistFeatures) -> float:
    """Seconds the build of an sdist with ``features`` is expected to take on a 2-core machine
    (only the ratios between builds matter to the scheduler):

        0.4 + 0.25 per MB of sdist + 1.5 if meson.build, CMakeLists.txt or Cargo.toml is at its
        root + for each kind of compiled source: its seconds per unit x (files + kB / 100)

    with 0.5 s per unit of C, 1.0 of C++ and Fortran, 4.5 of Cython (.pyx), 0.02 of Rust and 5.0
    of CUDA. Sources under test, documentation or example folders are not counted. Between 0.4
    and ``MAX_ESTIMATE`` seconds.
    """
    seconds = BASE_SECONDS + SECONDS_PER_MB * _count(features.total_bytes) / 1e6
    if features.native_build:
        seconds += NATIVE_BUILD_SECONDS
    for kind, per_unit in SECONDS_PER_UNIT.items():
        files = _count(features.compiled_files.get(kind, 0))
        kilobytes = _count(features.compiled_bytes.get(kind, 0)) / 1000
        seconds += per_unit * (files + kilobytes / UNIT_KB)
    if not math.isfinite(seconds):
        return MAX_ESTIMATE
    return min(MAX_ESTIMATE, max(BASE_SECONDS, seconds))


def _count(n: int) -> float:
    """A count or size as a float between 0 and 10^18 (a count too large for a float, or
    negative, cannot come from an extraction; bounded all the same)."""
    return float(min(max(0, n), 10**18))


@dataclass(frozen=True)
class PastBuild:
    """A build recorded in this repository: the version built and how long it took."""

    version: str
    seconds: float


def seconds_from_history(version: str, past: Sequence[PastBuild]) -> float | None:
    """The seconds of ``version``'s build, from earlier builds of the same project: the same
    version's if recorded, else the nearest older version's, else the nearest newer one's (a
    project's build time changes little from one release to the next; after ``rewheel update``
    most pins are a newer version than the one built before). None without a usable record
    (versions that do not parse, durations that are not positive and finite, are skipped)."""
    usable: list[tuple[Version, float]] = []
    for build in past:
        if not (math.isfinite(build.seconds) and build.seconds > 0):
            continue
        try:
            usable.append((Version(build.version), build.seconds))
        except InvalidVersion:
            continue
    if not usable:
        return None
    try:
        wanted = Version(version)
    except InvalidVersion:
        return max(usable)[1]  # the newest build's
    usable.sort()
    at = bisect.bisect_left(usable, wanted, key=lambda b: b[0])
    if at < len(usable) and usable[at][0] == wanted:
        return min(usable[at][1], MAX_ESTIMATE)
    chosen = usable[at - 1] if at > 0 else usable[at]
    return min(chosen[1], MAX_ESTIMATE)
