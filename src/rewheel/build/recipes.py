"""Custom build recipes: for packages whose declared backend cannot run here.

A recipe is found by name through the ``rewheel.recipes`` entry point group and replaces the
PEP 517 ``build_wheel`` call; everything else (the sdist, its build environment, publishing,
records) stays as for any package. A setting selects it: ``[build] recipe = "NAME"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from packaging.utils import NormalizedName
from packaging.version import Version

from ..core.errors import ConfigError, Step
from ..core.types import Confinement, Runner


@dataclass(frozen=True)
class RecipeContext:
    name: NormalizedName
    version: Version
    source_dir: Path  # the extracted (and patched) sdist
    out_dir: Path  # where the wheel must be written
    python: Path  # the build environment's interpreter
    environ: Mapping[str, str]  # the build environment's variables (scrubbed, settings applied)
    runner: Runner
    log: Path
    config_settings: Mapping[str, Any]
    # What the build code may see: pass it to every runner call that runs the package's code
    # (compilers, build scripts), so that it runs in the sandbox.
    confine: Confinement | None = None


class BuildRecipe(Protocol):
    """Builds a wheel from a prepared source tree, and returns its path in ``ctx.out_dir``."""

    def build_wheel(self, ctx: RecipeContext) -> Path: ...


def load_recipe(name: str) -> BuildRecipe:
    for ep in entry_points(group="rewheel.recipes"):
        if ep.name == name:
            factory = ep.load()
            recipe: BuildRecipe = factory()
            return recipe
    known = sorted(ep.name for ep in entry_points(group="rewheel.recipes"))
    raise ConfigError(
        f"no build recipe named {name!r} (installed: {', '.join(known) or 'none'})",
        step=Step.SETTINGS,
    )
