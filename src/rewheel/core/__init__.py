"""The core: shared types and errors, the resolver, the scheduler and the bootstrap orchestration.
Pure logic; it imports no other layer.
"""
