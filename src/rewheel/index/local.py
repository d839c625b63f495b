"""Sdists made on this machine, served beside the upstream as if an index listed them.

``rewheel bootstrap ./project`` packs the project folder into an sdist (``rewheel.projectdir``);
``WithLocalSdists`` puts it in front of the upstream: the project's page lists that one file and
nothing the upstream has under the same name, so the resolver, the metadata source and the
preparer take it like any sdist (its sha256 checked when it is copied into the repository's
``sdists/``). Its URL is the folder's, with the archive's name as fragment
(``core.paths.local_sdist_url``): records and provenance say where it came from and claim no index.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import NormalizedName

from ..core.errors import IntegrityError, Step
from ..core.fsutil import public_file_mode, sha256_file
from ..core.paths import local_sdist_url
from ..core.types import IndexFile, ProjectPage, Upstream


@dataclass(frozen=True)
class LocalSdist:
    """An sdist rewheel made of the project folder ``folder`` (absolute), kept at ``path``."""

    name: NormalizedName
    version: str
    path: Path
    sha256: str
    folder: Path
    requires_python: str | None = None

    @property
    def url(self) -> str:
        return local_sdist_url(self.folder.as_uri(), self.path.name)

    def index_file(self) -> IndexFile:
        return IndexFile(
            filename=self.path.name,
            url=self.url,
            sha256=self.sha256,
            requires_python=self.requires_python,
            size=self.path.stat().st_size,
        )


class WithLocalSdists:
    """An ``Upstream``: ``upstream``, except that each local sdist's project is that sdist alone."""

    def __init__(self, upstream: Upstream, sdists: Sequence[LocalSdist]) -> None:
        self.upstream = upstream
        self._by_name = {s.name: s for s in sdists}
        self._by_url = {s.url: s for s in sdists}

    def get_project(self, name: NormalizedName) -> ProjectPage:
        local = self._by_name.get(name)
        if local is None:
            return self.upstream.get_project(name)
        return ProjectPage(name=name, files=(local.index_file(),))

    def get_metadata(self, file: IndexFile) -> bytes | None:
        if file.url in self._by_url:
            return None  # read from the sdist's PKG-INFO, or from the wheel once built
        return self.upstream.get_metadata(file)

    def download(self, file: IndexFile, dest_dir: Path) -> Path:
        local = self._by_url.get(file.url)
        if local is None:
            return self.upstream.download(file, dest_dir)
        target = dest_dir / local.path.name
        if target.is_file() and not target.is_symlink() and sha256_file(target) == local.sha256:
            return target
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=".local-sdist-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, local.path.open("rb") as src:
                shutil.copyfileobj(src, out)
            if sha256_file(tmp) != local.sha256:
                raise IntegrityError(
                    f"the sdist made of {local.folder} changed after it was made",
                    package=local.name,
                    version=local.version,
                    step=Step.DOWNLOAD,
                    hint="run the bootstrap again",
                )
            os.chmod(tmp, public_file_mode())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target
