"""The build record: one frozen type, one JSON shape, checked when read back."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from fakes import make_record

from rewheel.core.records import Attestation, BuildRecord, EnvEntry, RecordError, Why


def full() -> BuildRecord:
    return make_record(
        "app",
        "1.0",
        why=(Why(None, "app", "toplevel"), Why("meta==2", "app>=1", "install")),
        build_env=(EnvEntry("tool-a", "2.0", "7" * 64),),
        build_system_requires=("tool-a>=2",),
        backend_requires=("cython",),
        cache_key="c" * 64,
        seconds=1.5,
        log="/repo/logs/app-1.0.log",
        system_tools=({"name": "cmake", "version": "3.28", "path": "/usr/bin/cmake"},),
        sandbox={"kind": "bubblewrap", "namespaces": ["user", "pid"]},
        settings={"env": {"A": "1"}},
    ).attested(Attestation("app.whl.provenance.json", 1700000000, "env2"))


def test_json_round_trip_keeps_every_field() -> None:
    record = full()
    text = json.dumps(record.to_json())
    again = BuildRecord.from_json(json.loads(text))
    assert again == record
    assert again.to_json() == record.to_json()
    assert again.provenance == "app.whl.provenance.json" and again.build_env_dir == "env2"


def test_every_key_is_written_whatever_the_path() -> None:
    """A pre-built wheel's record and a built one have the same keys: one shape."""
    prebuilt = make_record("pre", "1.0", sdist_url=None, sdist_sha256=None, prebuilt=True)
    assert list(prebuilt.to_json()) == list(full().to_json())
    assert prebuilt.to_json()["provenance"] is None
    assert prebuilt.to_json()["build_env"] == []


def test_the_record_and_its_nested_objects_cannot_be_changed() -> None:
    record = full()
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.name = "other"  # type: ignore[misc]
    assert record.sandbox is not None
    with pytest.raises(TypeError):
        record.sandbox["kind"] = "none"  # type: ignore[index]
    # The caller's dict stays its own: changing it does not change the record.
    given: dict[str, Any] = {"kind": "bubblewrap"}
    other = dataclasses.replace(record, sandbox=given)
    given["kind"] = "none"
    assert other.sandbox == {"kind": "bubblewrap"}
    assert hash(other) == hash(dataclasses.replace(record, sandbox={"kind": "bubblewrap"}))


def test_an_older_record_without_later_keys_is_read_with_defaults() -> None:
    old = {
        "name": "app",
        "version": "1.0",
        "sdist_url": "https://files.example/app-1.0.tar.gz",
        "sdist_sha256": "5" * 64,
        "wheel": "app-1.0-py3-none-any.whl",
        "wheel_sha256": "9" * 64,
        "seconds": 3,
    }
    record = BuildRecord.from_json(old)
    assert record.seconds == 3.0 and record.sandbox is None and record.build_env == ()
    assert not record.prebuilt and record.provenance is None


def test_keys_of_a_later_version_are_kept_when_written_back() -> None:
    data = {**full().to_json(), "signed_by": {"key": "abc"}}
    record = BuildRecord.from_json(data)
    assert record.unknown == {"signed_by": {"key": "abc"}}
    assert record.to_json() == data


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"name": 3}, "'name'"),
        ({"version": ""}, "'version'"),
        ({"wheel_sha256": None}, "'wheel_sha256'"),
        ({"sdist_url": ["x"]}, "'sdist_url'"),
        ({"build_env": [{"name": "a", "version": "1"}]}, "'sha256'"),
        ({"build_env": "tool"}, "'build_env'"),
        ({"why": [{"package": 1, "requirement": "a", "kind": "install"}]}, "'package'"),
        ({"backend_requires": ["a", 1]}, "'backend_requires'"),
        ({"seconds": "fast"}, "'seconds'"),
        ({"seconds": True}, "'seconds'"),
        ({"prebuilt": "yes"}, "'prebuilt'"),
        ({"source_date_epoch": 1.5}, "'source_date_epoch'"),
        ({"sandbox": "bubblewrap"}, "'sandbox'"),
    ],
)
def test_a_record_of_the_wrong_shape_is_refused_naming_the_key(
    change: dict[str, object], key: str
) -> None:
    with pytest.raises(RecordError, match=key):
        BuildRecord.from_json({**full().to_json(), **change})


def test_not_an_object_is_refused() -> None:
    with pytest.raises(RecordError, match="JSON object"):
        BuildRecord.from_json(["app", "1.0"])


def test_why_is_filled_in_a_new_record() -> None:
    record = make_record("tool", "1.0")
    listed = record.with_why([Why("app==1.0", "tool", "build-system")])
    assert record.why == () and listed.why == (Why("app==1.0", "tool", "build-system"),)
    assert listed.to_json()["why"] == [
        {"package": "app==1.0", "requirement": "tool", "kind": "build-system"}
    ]
    assert listed.node == "tool==1.0"
