"""JupyterLab in Chromium, its kernels ours (``jupyter lab --gateway-url``): a notebook's plot
and a slider that a person moves, each round trip through our store and a sandboxed kernel."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import Watched, screenshot
from tests.jupyter import TOKEN, JupyterServer, call
from tests.servers import Server, Servers

NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": [
            "import matplotlib.pyplot as plt\n", "plt.plot([1, 3, 2]); plt.title('drawn in the sandbox'); plt.show()"]},
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": [
            "import ipywidgets as w\n", "slider = w.IntSlider(description='n')\n", "label = w.Label('value 0')\n",
            "slider.observe(lambda c: setattr(label, 'value', f\"value {c['new']}\"), names='value')\n",
            "display(slider, label)"]},
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 5,
}
# JupyterLab offers the v1 subprotocol first; Jupyter Server's gateway mode refuses it, and
# JupyterLab then connects without: Chromium logs the refused handshake as an error
REFUSED_V1 = "Sent non-empty 'Sec-WebSocket-Protocol' header but no response was received"


@pytest.fixture(scope="module")
def ours(module_servers: Servers) -> Server:
    return module_servers("serve", name="jupyterlab")


@pytest.fixture(scope="module")
def lab(ours: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    server = JupyterServer(ours.url, tmp_path_factory.mktemp("jupyterlab"), lab=True)
    yield server
    server.stop()


def test_a_notebook_in_jupyterlab_plots_and_moves_a_slider_on_our_kernel(lab: JupyterServer, ours: Server,
                                                                         watched: Watched) -> None:
    (lab.notebooks / "demo.ipynb").write_text(json.dumps(NOTEBOOK))
    page: Any = watched.page
    page.goto(f"{lab.url}/lab/tree/demo.ipynb?token={TOKEN}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    page.wait_for_function("() => document.querySelector('#jp-main-statusbar')?.textContent.includes('Idle')",
                           timeout=60_000)
    kernels = call("GET", ours.url + "/api/kernels")
    assert len(kernels) == 1  # the notebook's kernel is one of ours
    page.locator(".jp-Cell").first.click()
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Shift+Enter")
    plot = page.wait_for_selector(".jp-OutputArea-output img", timeout=60_000)
    assert plot.get_attribute("src").startswith("data:image/png")
    page.wait_for_selector(".widget-slider .noUi-handle", timeout=60_000)
    handle = page.locator(".widget-slider .noUi-handle").first
    handle.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.widget-label')].some(e => e.textContent.trim() === 'value 3')",
        timeout=30_000)
    assert page.locator(".widget-readout").first.text_content().strip() == "3"
    screenshot(page, "jupyterlab-notebook")
    other = [e for e in watched.errors if REFUSED_V1 not in e]
    assert not other, other
