"""Adapters: sandbox runners, the HTTP adapter, settings and metrics."""
