"""singlecell: run a Python cell in a fresh sandboxed kernel, answer with Jupyter messages."""

__version__ = "0.1.0"
