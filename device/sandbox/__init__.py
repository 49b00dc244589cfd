"""Sandbox layers applied in a forked kernel before user code runs."""
