"""The end of a bootstrap as one JSON object, for scripts: ``rewheel bootstrap --json``.

The same facts as the summary people read on stderr (docs/inspecting.md describes both), in
the shapes the run files use: each failed or unbuilt package is a node of ``runs/<id>.json``,
with its error object (docs/records.md). Pure: values in, a JSON value out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.history import ErrorInfo, NodeRun, run_nodes, run_outcome
from ..core.report import BootstrapResult, Outcome

FORMAT = 1


def summary_json(
    result: BootstrapResult | None,
    repo: Path,
    seconds: float,
    *,
    requested: Sequence[str],
    error: BaseException | None = None,
) -> dict[str, Any]:
    """What became of a run: ``result``, or with ``error`` what stopped it (``result`` None)."""
    nodes: list[NodeRun] = list(run_nodes(result)[0]) if result is not None else []
    if result is not None:  # a failure the graph does not list is still one
        listed = {n.id for n in nodes}
        for node, exc in sorted(result.failures.items()):
            if node not in listed:
                name, _, version = node.partition("==")
                nodes.append(NodeRun(node, name, version, Outcome.FAILED, error=ErrorInfo.of(exc)))
    outcome = run_outcome(result, error)

    def ids(*outcomes: Outcome) -> list[str]:
        return sorted(n.id for n in nodes if n.outcome in outcomes)

    return {
        "format": FORMAT,
        "outcome": outcome.value,
        "repository": str(repo.absolute()),
        "seconds": round(seconds, 3),
        "requested": list(requested),
        "built": ids(Outcome.BUILT),
        "reused": ids(Outcome.REUSED),
        "prebuilt": ids(Outcome.PREBUILT),
        "from_cache": ids(Outcome.FROM_CACHE),
        "failed": [n.to_json() for n in sorted(nodes, key=_id) if n.outcome is Outcome.FAILED],
        "not_attempted": [
            n.to_json()
            for n in sorted(nodes, key=_id)
            if n.outcome in (Outcome.NOT_ATTEMPTED, Outcome.DEPENDENCY_FAILED)
        ],
        "error": ErrorInfo.of(error).to_json() if error is not None else None,
    }


def _id(node: NodeRun) -> str:
    return node.id
