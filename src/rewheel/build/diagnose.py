"""What a failed build's log says went wrong."""

from __future__ import annotations

# What a failed connection or name lookup prints (Python, curl, git, pip ...): in a build without
# network these mean that the build tried to download something.
NETWORK_FAILURES = (
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Name or service not known",
    "No address associated with hostname",
    "[Errno 101]",
    "[Errno -3]",
    "[Errno -2]",
    "Could not resolve host",
    "Failed to establish a new connection",
    # In the sandbox's network namespace only loopback exists, and nothing listens there.
    "[Errno 111] Connection refused",
)


def mentions_network_failure(output: str) -> bool:
    """Whether a command's output shows that it failed to reach the network."""
    return any(text in output for text in NETWORK_FAILURES)
