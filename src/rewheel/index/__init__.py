"""Talking to package indexes: the HTTP client, the upstream index client, parsing and rendering
PEP 503/691 pages.
"""
