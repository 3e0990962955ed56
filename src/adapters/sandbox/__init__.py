"""Sandbox runners (nsjail, rlimit) and the in-sandbox harness they start."""
