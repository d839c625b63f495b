"""benchmarks/bench_scaleout.py: the cold run's synthetic sdist features, and that a cold run
weighed by their estimate comes near the bound where weighing every build 1 does not."""

from __future__ import annotations

import importlib.util
import math
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest

from rewheel.core.durations import estimate_build_seconds

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "bench_scaleout.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_scaleout", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_scaleout"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("target", [0.0, 0.4, 0.7, 1.1, 1.15, 1.2, 5.0, 40.0, 300.0])
def test_features_for_a_target_are_estimated_at_that_target(
    bench: ModuleType, target: float
) -> None:
    estimate = estimate_build_seconds(bench.features_for(target))
    assert estimate == pytest.approx(max(target, 0.4), rel=0.01, abs=0.01)


def test_cold_features_carry_the_measured_error_not_the_duration(bench: ModuleType) -> None:
    graph = bench.make_graph(1000, median=0.1, sigma=1.0, seed=16)
    features = bench.cold_features(graph, median=0.1, seed=16)
    errors = [
        math.log(estimate_build_seconds(features[n]) / (graph.seconds[n] * 5.0))
        for n in graph.seconds
        if graph.seconds[n] * 5.0 > 1.2  # above the base, where the estimate can follow
    ]
    assert statistics.fmean(errors) == pytest.approx(0.5, abs=0.25)
    assert statistics.pstdev(errors) == pytest.approx(1.0, abs=0.2)


def test_a_cold_run_estimated_comes_near_the_bound_and_weight_one_does_not(
    bench: ModuleType,
) -> None:
    graph = bench.make_graph(1000, median=0.1, sigma=1.0, seed=16)
    features = bench.cold_features(graph, median=0.1, seed=16)
    bound = max(graph.critical_path()[0], graph.total / 8)
    cold = bench.simulate(graph, 8, bench.weights_of(graph, "unknown", features))
    blind = bench.simulate(graph, 8, bench.weights_of(graph, "weight1", features))
    assert cold / bound < 1.05 < 1.2 < blind / bound
