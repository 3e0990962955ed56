"""The pure core of safe-exec: scripts, limits, outcomes and the rules that classify a sandbox run.

Only the standard library and attrs are allowed here (checked by tests/unit/test_layering.py).
"""
