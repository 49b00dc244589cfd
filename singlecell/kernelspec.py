"""The ``singlecell-python`` kernelspec: the server's sandboxed kernel for any Jupyter client.

``singlecell kernelspec install [--user | --sys-prefix | --prefix P]`` writes it where Jupyter
looks for kernels; then ``jupyter console --kernel singlecell-python`` (or a notebook) runs
``python -m device.jupyter_kernel`` with the Python that installed it. The kernel reads its
settings (limits, sandbox layers) from the ``SINGLECELL_*`` environment it is started in.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

KERNEL_NAME = "singlecell-python"
DISPLAY_NAME = "Python 3 (singlecell sandbox)"


def kernel_json(python: str | None = None) -> dict[str, Any]:
    """The content of ``kernel.json``: how a Jupyter client starts and interrupts the kernel."""
    return {
        "argv": [python or sys.executable, "-m", "device.jupyter_kernel", "-f", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": {"debugger": False, "singlecell": {"sandboxed": True}},
    }


def write_kernelspec(directory: Path, python: str | None = None) -> Path:
    """Write the kernelspec's files into ``directory`` (which must exist); returns it."""
    (directory / "kernel.json").write_text(json.dumps(kernel_json(python), indent=2) + "\n", encoding="utf-8")
    return directory


def install(*, user: bool = False, prefix: str | None = None, name: str = KERNEL_NAME) -> str:
    """Install the kernelspec as ``name``: for this user, under ``prefix`` (its
    ``share/jupyter/kernels``), or system-wide when neither is given. Replaces an earlier
    one of that name. Returns the folder it was installed in."""
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / name
        source.mkdir(mode=0o755)  # copied with its mode: every user must be able to read it (not mkdtemp's 0700)
        write_kernelspec(source)
        destination: str = KernelSpecManager().install_kernel_spec(str(source), kernel_name=name, user=user,
                                                                   prefix=prefix)
    return destination


def remove(name: str = KERNEL_NAME) -> str:
    """Remove the installed kernelspec ``name`` (the first Jupyter finds); returns its folder.
    Raises :class:`jupyter_client.kernelspec.NoSuchKernel` (a ``KeyError``) if there is none."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    if name not in manager.find_kernel_specs():
        raise NoSuchKernel(name)
    removed: str = manager.remove_kernel_spec(name)
    return removed
