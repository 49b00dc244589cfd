"""Every kind of Jupyter message a cell produces, as ``GET /output`` serves it."""

from __future__ import annotations

import base64
import textwrap
from typing import Any

import pytest

from singlecell.client import Client
from singlecell.summary import strip_ansi
from tests.servers import run_cell

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# a 1x1 transparent PNG
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")


def msgs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item["msg"] for item in items]


def of_type(items: list[dict[str, Any]], msg_type: str) -> list[dict[str, Any]]:
    return [m for m in msgs(items) if m["msg_type"] == msg_type]


def streams(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["content"]["name"], m["content"]["text"]) for m in of_type(items, "stream")]


def test_a_cell_goes_busy_input_reply_idle_in_that_order(client: Client) -> None:
    _, items, page = run_cell(client, "x = 1")
    kinds = [m["msg_type"] for m in msgs(items)]
    assert kinds[0] == "status" and items[0]["msg"]["content"]["execution_state"] == "busy", kinds
    assert kinds[1] == "execute_input", kinds
    assert items[1]["msg"]["content"]["code"] == "x = 1"
    assert kinds[-2] == "execute_reply", kinds
    assert items[-2]["msg"]["content"]["status"] == "ok"
    assert kinds[-1] == "status" and items[-1]["msg"]["content"]["execution_state"] == "idle", kinds
    assert page["status"] == "done" and page["done"] is True


def test_every_message_answers_the_request_and_seqs_run_1_to_n_without_gaps(client: Client) -> None:
    code = textwrap.dedent("""
        import sys
        from IPython.display import HTML, display
        print('out')
        print('err', file=sys.stderr)
        display(HTML('<b>x</b>'))
        open('f.txt', 'w').write('data')
        6 * 7
    """)
    request_id, items, _ = run_cell(client, code)
    assert [item["seq"] for item in items] == list(range(1, len(items) + 1))
    assert len(items) >= 7  # busy, input, 2 streams, display, result, files, reply, idle
    for item in items:
        msg = item["msg"]
        assert msg["parent_header"]["msg_id"] == request_id, msg
        assert msg["parent_header"]["msg_type"] == "execute_request", msg
        assert set(msg) >= {"header", "parent_header", "metadata", "content", "msg_type"}, msg
        assert msg["header"]["msg_type"] == msg["msg_type"], msg


def test_stdout_and_stderr_arrive_as_separate_streams(client: Client) -> None:
    _, items, _ = run_cell(client, "import sys\nprint('to out')\nprint('to err', file=sys.stderr)")
    out = "".join(text for name, text in streams(items) if name == "stdout")
    err = "".join(text for name, text in streams(items) if name == "stderr")
    assert out == "to out\n"
    assert err == "to err\n"


def test_interleaved_stdout_and_stderr_keep_their_order(client: Client) -> None:
    code = textwrap.dedent("""
        import sys
        for i in range(20):
            print(f'o{i}')
            print(f'e{i}', file=sys.stderr)
    """)
    _, items, _ = run_cell(client, code)
    pieces = []
    for name, text in streams(items):
        for line in text.splitlines():
            pieces.append((name, line))
    expected = []
    for i in range(20):
        expected += [("stdout", f"o{i}"), ("stderr", f"e{i}")]
    assert pieces == expected


def test_output_of_a_subprocess_arrives_as_stdout(client: Client) -> None:
    _, items, _ = run_cell(client, "import os\nos.system('echo hi')")
    assert streams(items) == [("stdout", "hi\n")]


def test_output_of_a_subprocess_keeps_its_place_among_prints(client: Client) -> None:
    code = "import subprocess\nprint('before', flush=True)\nsubprocess.run(['echo', 'middle'])\nprint('after')"
    _, items, _ = run_cell(client, code)
    assert "".join(text for _, text in streams(items)) == "before\nmiddle\nafter\n"


def test_last_expression_becomes_an_execute_result(client: Client) -> None:
    _, items, _ = run_cell(client, "6 * 7")
    results = of_type(items, "execute_result")
    assert len(results) == 1
    assert results[0]["content"]["data"] == {"text/plain": "42"}
    assert isinstance(results[0]["content"]["execution_count"], int)


DISPLAYS = [
    pytest.param("HTML('<b>bold</b>')", "text/html", "<b>bold</b>", id="html"),
    pytest.param(f"Image(data={TINY_PNG!r})", "image/png", None, id="png"),
    pytest.param("SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\">"
                 "<circle cx=\"2\" cy=\"2\" r=\"1\"/></svg>')", "image/svg+xml", "<circle", id="svg"),
    pytest.param("Latex(r'$\\alpha^2$')", "text/latex", "$\\alpha^2$", id="latex"),
    pytest.param("Markdown('# Title')", "text/markdown", "# Title", id="markdown"),
    pytest.param("JSON({'a': [1, 2]})", "application/json", {"a": [1, 2]}, id="json"),
]


@pytest.mark.parametrize(("expression", "mime", "expected"), DISPLAYS)
def test_ipython_display_sends_display_data_of_its_mime_type(client: Client, expression: str, mime: str,
                                                             expected: Any) -> None:
    code = f"from IPython.display import HTML, SVG, JSON, Image, Latex, Markdown, display\ndisplay({expression})"
    _, items, _ = run_cell(client, code)
    displays = of_type(items, "display_data")
    assert len(displays) == 1, msgs(items)
    data = displays[0]["content"]["data"]
    assert mime in data, data
    if mime == "image/png":
        assert base64.b64decode(data[mime]) == TINY_PNG
    elif isinstance(expected, str):
        assert expected in data[mime]
    else:
        assert data[mime] == expected


def _one_png(items: list[dict[str, Any]]) -> bytes:
    pngs = [m["content"]["data"]["image/png"] for m in of_type(items, "display_data")
            if "image/png" in m["content"]["data"]]
    assert len(pngs) == 1, f"expected one PNG display, got {len(pngs)}: {[m['msg_type'] for m in msgs(items)]}"
    return base64.b64decode(pngs[0])


def test_matplotlib_plt_show_sends_one_png(client: Client) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"
    _, items, page = run_cell(client, code)
    assert page["status"] == "done"
    assert _one_png(items).startswith(PNG_SIGNATURE)


def test_matplotlib_figure_left_open_is_sent_as_png_at_the_end_of_the_cell(client: Client) -> None:
    code = "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\n_ = ax.bar([1, 2], [3, 4])"
    _, items, page = run_cell(client, code)
    assert page["status"] == "done"
    assert _one_png(items).startswith(PNG_SIGNATURE)
    kinds = [m["msg_type"] for m in msgs(items)]
    assert kinds.index("display_data") < kinds.index("execute_reply")


def test_an_exception_sends_an_error_with_name_value_and_traceback(client: Client) -> None:
    code = "def f():\n    raise ValueError('boom here')\nprint('before')\nf()"
    _, items, page = run_cell(client, code)
    errors = of_type(items, "error")
    assert len(errors) == 1
    content = errors[0]["content"]
    assert content["ename"] == "ValueError"
    assert content["evalue"] == "boom here"
    trace = strip_ansi("\n".join(content["traceback"]))  # IPython colours it, as Jupyter shows it
    assert "ValueError" in trace and "boom here" in trace and "f()" in trace
    reply = of_type(items, "execute_reply")[0]["content"]
    assert reply["status"] == "error" and reply["ename"] == "ValueError"
    assert page["status"] == "error"
    assert streams(items) == [("stdout", "before\n")]


def test_written_files_are_announced_in_a_files_extension_message(client: Client) -> None:
    request_id, items, _ = run_cell(client, "open('out.txt', 'w').write('hello')")
    extensions = of_type(items, "extension")
    files_msgs = [m for m in extensions if m["content"]["msg_type"] == "files"]
    assert len(files_msgs) == 1, extensions
    listed = files_msgs[0]["content"]["content"]["files"]
    assert [(f["name"], f["size"]) for f in listed] == [("out.txt", 5)]
    assert listed[0]["url"] == f"/files/{request_id}/out.txt"
    kinds = [m["msg_type"] for m in msgs(items)]
    assert kinds.index("extension") < kinds.index("status", 1)  # before the final idle


def test_a_cell_writing_no_file_sends_no_files_extension(client: Client) -> None:
    _, items, _ = run_cell(client, "print(1)")
    assert of_type(items, "extension") == []
