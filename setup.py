"""Packaging. ``static/`` and ``templates/`` stay at the top of the repository (the design
card's layout) and are installed inside the ``singlecell`` package, where the server looks
for them when it does not run from a source checkout."""

from setuptools import setup

setup(
    name="singlecell",
    version="0.1.0",
    description="A single-cell compute server: runs Python cells in sandboxed kernels, "
    "answers with Jupyter messages.",
    python_requires=">=3.11",
    packages=[
        "singlecell",
        "singlecell.store",
        "singlecell.web",
        "singlecell.accounts",
        "singlecell.library",
        "singlecell.library.search",
        "device",
        "device.sandbox",
        "filestore",
        "singlecell.static",
        "singlecell.templates",
    ],
    package_dir={"singlecell.static": "static", "singlecell.templates": "templates"},
    package_data={
        "singlecell": ["py.typed"],
        "device": ["py.typed"],
        "filestore": ["py.typed"],
        "singlecell.static": ["*", "*/*", "*/*/*"],
        "singlecell.templates": ["*"],
    },
    install_requires=[
        "tornado>=6.3",
        "pyzmq>=25",
        "sqlalchemy>=2.0",
        "psycopg[binary]>=3.1",  # PostgreSQL stores (postgresql://…)
        "jupyter_client>=8",
        "ipython>=8",
        "numpy",
        "matplotlib",
        "ipywidgets>=8,<9",  # widgets in cells: the kernel speaks comms (device/comms.py)
        "comm>=0.1.3",
        "argon2-cffi>=23",  # passwords (Argon2id)
        "markdown-it-py>=3",  # blurbs and comments, raw HTML off…
        "nh3>=0.2",  # …then sanitised
        "pygments>=2.15",  # code highlighted on the server
        "prometheus_client>=0.17",  # /metrics of web processes and devices (singlecell/metrics.py)
        "pymongo>=4.6",  # MongoDB stores and GridFS filestores (mongodb://…)
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-timeout", "ruff", "mypy", "jupyter-kernel-test", "playwright>=1.40",
                 "locust>=2.20",
                 # real Jupyter clients of the kernel API (tests/jupyter.py, tests/e2e/test_gateway.py)
                 "jupyter_server>=2.10", "websocket-client>=1.6", "jupyterlab>=4",
                 # the OpenAPI document: validated, and the running server fuzzed from it (tests/e2e/test_fuzz.py)
                 "openapi-spec-validator>=0.7", "schemathesis>=4",
                 # MongoDB's stand-in where no server can run (tests/mongo.py)
                 "mongomock>=4.1"],
    },
    entry_points={"console_scripts": ["singlecell = singlecell.cli:main"]},
)
