"""The kernel pool (device/pool.py) in this process, with its real template and kernels: a
kernel's uid comes back once the template reports it gone, whatever order the reports come in."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from device.pool import KernelPool
from device.sandbox.registry import layer_settings
from singlecell.config import Config


def test_a_kernel_released_before_its_forked_report_was_read_still_gives_its_uid_back(tmp_path: Path) -> None:
    """The template runs in the idle class: on a busy host a kernel can start, run its cell and be
    released before the device reads the template's "forked". That report is held back here (the
    pool's reader of the template's reports is paused) to make the order certain. Once read, the
    kernel must still be killed, its exit told, and its uid (as root) be free again; before, it
    was forgotten, and every such kernel kept its uid for good."""
    config = Config(data_dir=str(tmp_path / "data"), kernel_uids="205000-205007", preload="", ready_kernels=1)

    async def scenario() -> None:
        pool = KernelPool(work_root=tmp_path / "kernels", ready=0, preload=[], output_limit=100_000,
                          layers=layer_settings(config, str(tmp_path / "kernels")))
        await pool.start()
        try:
            assert pool._reader is not None and pool._control is not None
            pool._reader.cancel()  # the template's reports wait, unread, in its socket
            pool.ready_target = 1
            kernel = await asyncio.wait_for(pool.acquire(), 30)  # it said hello: it is ready
            assert kernel.pid is None  # its "forked" is unread
            uid = kernel.uid
            pool.ready_target = 0
            pool.release(kernel)
            pool._reader = pool._spawn(pool._read_control(pool._control))  # the reports are read now
            await asyncio.wait_for(asyncio.shield(kernel.exited), 15)
            assert kernel.pid is not None  # the late report still found it
            assert not os.path.exists(f"/proc/{kernel.pid}")  # killed, and reaped by the template
            if uid is not None:
                assert pool.uids is not None and uid in pool.uids.free
        finally:
            await pool.close()

    asyncio.run(scenario())
