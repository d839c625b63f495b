"""Proving it: provenance and signing, verify, chain of custody, SBOM, rebuild, install."""
