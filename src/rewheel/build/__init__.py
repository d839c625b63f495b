"""Building one package: sources, build environments, PEP 517 hooks, the runner and the sandbox,
recipes, settings.
"""
