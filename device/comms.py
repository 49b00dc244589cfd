"""Comms: the kernel's side of the Jupyter comm protocol, so ipywidgets works as in ipykernel.

The ``comm`` package asks a kernel to replace two hooks: ``comm.create_comm`` (here
:class:`KernelComm`, which publishes through the kernel's channel) and ``comm.get_comm_manager``
(its default, one :class:`comm.base_comm.CommManager` a process, is what we want: the template
makes it before forking, so every kernel has its own copy). :func:`install` sets them once, in
the template. Messages from the front end (``comm_open``, ``comm_msg``, ``comm_close``) reach the
manager through :func:`dispatch`.

A cell whose kernel still has open comms when it finishes can become a session
(``device/session.py``): :func:`open_comms` tells.
"""

from __future__ import annotations

import os
from typing import Any

import comm
from comm.base_comm import BaseComm, CommManager

#: what a front end may send to a kernel's comms
FROM_FRONT_END = ("comm_open", "comm_msg", "comm_close")


class KernelComm(BaseComm):
    """A comm whose messages go out on the current kernel's channel (iopub, for Jupyter)."""

    def publish_msg(self, msg_type: str, data: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
                    buffers: list[Any] | None = None, **keys: Any) -> None:
        from device.kernel import current_kernel

        content = {"data": {} if data is None else data, "comm_id": self.comm_id, **keys}
        current_kernel().send_comm(msg_type, content, metadata or {}, [bytes(b) for b in buffers or ()])

    def handle_msg(self, msg: dict[str, Any]) -> None:
        """As the comm package does, but a handler's exception is shown as a cell's would be: a
        traceback the page shows, and a limit it ran into named (which ends the session). The
        comm manager would only log it."""
        try:
            super().handle_msg(msg)
        except Exception:
            from IPython import get_ipython

            shell = get_ipython()
            if shell is None:
                raise
            shell.showtraceback()


def install() -> None:
    """Make ``comm`` (and so ipywidgets) publish through our kernels. Widgets echo nothing
    back: there is one front end, which already has the value it sent."""
    os.environ.setdefault("JUPYTER_WIDGETS_ECHO", "0")  # read by ipywidgets when it is imported
    comm.create_comm = KernelComm


def manager() -> CommManager:
    return comm.get_comm_manager()


def register_widget_targets() -> None:
    """ipywidgets registers its comm targets when imported into a running IPython; a template
    that preloads it imports it before the shell exists, so register them once the shell does."""
    import sys

    widgets = sys.modules.get("ipywidgets")
    if widgets is not None and hasattr(widgets, "register_comm_target"):
        widgets.register_comm_target()


def open_comms() -> int:
    """How many comms are open in this process."""
    return len(manager().comms)


def dispatch(msg: dict[str, Any]) -> None:
    """Hand a front end's comm message to the manager (which logs a handler's exception to
    stderr, as in ipykernel: it reaches the page as a ``stream``)."""
    handler = getattr(manager(), msg["msg_type"])
    handler(None, None, msg)


def comm_info(target_name: str | None) -> dict[str, dict[str, str]]:
    """The open comms (of ``target_name`` only, if given), as a ``comm_info_reply`` lists them."""
    return {comm_id: {"target_name": c.target_name} for comm_id, c in manager().comms.items()
            if target_name is None or c.target_name == target_name}
