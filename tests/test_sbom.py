"""SBOM pieces: licences from core metadata, and the BOM's build-only marking and graph."""

from __future__ import annotations

import json

from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
from packaging.metadata import RawMetadata

from rewheel.repo.wheelfile import parse_metadata
from rewheel.trust.sbom import Package, bom_json, licenses_of, link_runtime, make_bom


def _meta(text: str) -> RawMetadata:
    return parse_metadata(("Metadata-Version: 2.4\nName: x\nVersion: 1\n" + text).encode())


def test_license_expression_comes_first() -> None:
    (lic,) = licenses_of(_meta("License-Expression: MIT OR Apache-2.0\nLicense: whatever\n"))
    assert isinstance(lic, LicenseExpression)
    assert lic.value == "MIT OR Apache-2.0"


def test_short_license_field_then_classifiers() -> None:
    (lic,) = licenses_of(_meta("License: MIT\n"))
    assert isinstance(lic, DisjunctiveLicense) and lic.id == "MIT"
    long_text = "License: Copyright (c) someone\n        all the text of a licence\n"
    classifiers = (
        "Classifier: License :: OSI Approved :: BSD License\n"
        "Classifier: License :: OSI Approved\n"
        "Classifier: Programming Language :: Python\n"
    )
    found = licenses_of(_meta(long_text + classifiers))
    assert [(lic.name) for lic in found if isinstance(lic, DisjunctiveLicense)] == ["BSD License"]
    assert licenses_of(None) == []


def test_licence_text_is_read_as_utf8() -> None:
    (lic,) = licenses_of(_meta("License: Licence publique © Café\n"))
    assert isinstance(lic, DisjunctiveLicense) and lic.name == "Licence publique © Café"


def test_bom_marks_build_only_components_and_both_kinds_of_edges() -> None:
    app = Package(
        "app",
        "1.0",
        "app-1.0-py3-none-any.whl",
        metadata=_meta("Requires-Dist: lib\nRequires-Dist: win; sys_platform == 'win32'\n"),
        sha256="a" * 64,
    )
    lib = Package("lib", "2.0", "lib-2.0-py3-none-any.whl", metadata=_meta(""), sha256="b" * 64)
    tool = Package("tool", "3.0", "tool-3.0-py3-none-any.whl", sha256="c" * 64, build_only=True)
    app.build_env.append(tool.ref)
    link_runtime([app, lib, tool])
    assert app.runtime_deps == [lib.ref]
    bom = json.loads(bom_json(make_bom([app, lib, tool], subject="demo", roots=[app.ref])))
    comps = {c["name"]: c for c in bom["components"]}
    assert comps["tool"]["scope"] == "excluded"
    assert {"name": "rewheel:build-only", "value": "true"} in comps["tool"]["properties"]
    assert {"name": "rewheel:build-dependency", "value": tool.ref} in comps["app"]["properties"]
    deps = {d["ref"]: d.get("dependsOn", []) for d in bom["dependencies"]}
    assert sorted(deps[app.ref]) == sorted([lib.ref, tool.ref])
    assert deps["rewheel-subject"] == [app.ref]
    assert bom["metadata"]["component"]["name"] == "demo"
