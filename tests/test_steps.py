"""Steps are one enum (rewheel.core.errors.Step) that still reads as text wherever it shows."""

from __future__ import annotations

import json

from rewheel.core.errors import BuildError, Step


def test_a_step_is_its_text_in_messages_json_and_comparisons() -> None:
    error = BuildError("boom", package="demo", version="1.0", step=Step.BUILD_WHEEL)
    assert str(error) == "demo==1.0 [build-wheel]: boom"
    assert error.step == "build-wheel"
    assert json.dumps({"step": error.step}) == '{"step": "build-wheel"}'
    assert Step("get-requires") is Step.GET_REQUIRES


def test_every_step_is_spelled_in_lower_case_with_hyphens() -> None:
    for step in Step:
        assert step.value == step.name.lower().replace("_", "-")
