"""Helpers shared by tests in several folders (tests/ is on pytest's pythonpath)."""
