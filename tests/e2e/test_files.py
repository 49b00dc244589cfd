"""Files: what a cell writes is collected and served; uploads are there before the code runs;
links a cell plants to the server's own files are never collected."""

from __future__ import annotations

import hashlib
import json
import textwrap
import urllib.parse

import pytest

from singlecell.client import Client, ClientError
from tests.servers import Server

BINARY = bytes(range(256)) * 40


def by_name(answer: dict[str, object]) -> dict[str, dict[str, object]]:
    files = answer["files"]
    assert isinstance(files, list)
    return {f["name"]: f for f in files}


def test_written_text_binary_and_nested_files_are_listed_and_download_identically(client: Client) -> None:
    code = textwrap.dedent(f"""
        import os
        with open('notes.txt', 'w') as fh:
            fh.write('line 1\\nline 2\\n')
        with open('blob.bin', 'wb') as fh:
            fh.write({BINARY!r})
        os.makedirs('deep/er')
        with open('deep/er/inner.csv', 'w') as fh:
            fh.write('a,b\\n1,2\\n')
    """)
    answer = client.eval(code)
    assert answer["status"] == "ok", answer
    files = by_name(answer)
    assert sorted(files) == ["blob.bin", "deep/er/inner.csv", "notes.txt"]
    expected = {"notes.txt": b"line 1\nline 2\n", "blob.bin": BINARY, "deep/er/inner.csv": b"a,b\n1,2\n"}
    for name, data in expected.items():
        assert files[name]["size"] == len(data)
        url = str(files[name]["url"])
        assert url.startswith(client.url + f"/files/{answer['id']}/")
        assert client.file(url) == data, name


@pytest.mark.parametrize(("name", "content_type"), [
    ("page.txt", "text/plain"),
    ("table.csv", "text/csv"),
    ("data.json", "application/json"),
    ("picture.png", "image/png"),
    ("raw.bin", "application/octet-stream"),
    ("no_extension", "application/octet-stream"),
])
def test_downloaded_files_have_a_content_type_from_their_name(client: Client, name: str, content_type: str) -> None:
    answer = client.eval(f"_ = open({name!r}, 'wb').write(b'x')")
    url = str(by_name(answer)[name]["url"])
    status, headers, body = client.request("GET", urllib.parse.urlsplit(url).path)
    assert status == 200 and body == b"x"
    assert headers["content-type"].split(";")[0] == content_type
    assert headers["x-content-type-options"] == "nosniff"


def test_an_html_file_is_served_sandboxed_so_it_cannot_run_as_the_site(client: Client) -> None:
    answer = client.eval("_ = open('evil.html', 'w').write('<script>alert(1)</script>')")
    url = str(by_name(answer)["evil.html"]["url"])
    status, headers, _ = client.request("GET", urllib.parse.urlsplit(url).path)
    assert status == 200
    assert "sandbox" in headers["content-security-policy"]


def test_uploads_are_in_the_working_folder_before_the_code_runs(client: Client) -> None:
    uploads = {"input.txt": "héllo\n".encode(), "sub/data.bin": BINARY}
    code = textwrap.dedent("""
        import hashlib, os
        print(open('input.txt', encoding='utf-8').read(), end='')
        print(hashlib.sha256(open('sub/data.bin', 'rb').read()).hexdigest())
        print(sorted(os.listdir('.')))
    """)
    answer = client.eval(code, files=uploads)
    assert answer["status"] == "ok", answer
    assert answer["stdout"] == f"héllo\n{hashlib.sha256(BINARY).hexdigest()}\n['input.txt', 'sub']\n"


def test_an_uploaded_module_and_package_can_be_imported(client: Client) -> None:
    """As in Jupyter, the cell's own folder is first on sys.path: uploads import."""
    uploads = {"helper.py": b"def twice(x):\n    return 2 * x\n", "pkg/__init__.py": b"",
               "pkg/tools.py": b"NAME = 'tools'\n"}
    answer = client.eval("import helper\nfrom pkg.tools import NAME\nprint(helper.twice(21), NAME)", files=uploads)
    assert answer["status"] == "ok", answer
    assert answer["stdout"] == "42 tools\n"
    assert answer["files"] == []  # importing them wrote no __pycache__ to collect


def test_the_cells_folder_is_first_on_sys_path_and_the_servers_folders_are_not(client: Client,
                                                                             server: Server) -> None:
    code = textwrap.dedent("""
        import json, os, sys
        print(json.dumps({"first": sys.path[0], "cwd": os.getcwd(), "path": sys.path}))
        open('written.py', 'w').write('VALUE = 7')
        import written
        print(written.VALUE)
    """)
    answer = client.eval(code)
    assert answer["status"] == "ok", answer
    seen, written = answer["stdout"].splitlines()
    paths = json.loads(seen)
    assert paths["first"] == paths["cwd"] and paths["path"].count(paths["cwd"]) == 1
    assert "" not in paths["path"] and "." not in paths["path"]  # no folder that moves with chdir
    assert not [p for p in paths["path"] if p.startswith(str(server.data_dir))], paths["path"]
    assert written == "7"  # a module the cell writes imports too


def test_unchanged_uploads_are_not_listed_but_changed_and_new_files_are(client: Client) -> None:
    uploads = {"keep.txt": b"same", "change.txt": b"old", "dir/keep2.txt": b"same too"}
    code = "_ = open('change.txt', 'w').write('new')\n_ = open('made.txt', 'w').write('fresh')"
    answer = client.eval(code, files=uploads)
    files = by_name(answer)
    assert sorted(files) == ["change.txt", "made.txt"]
    assert client.file(str(files["change.txt"]["url"])) == b"new"


def test_a_symlink_to_a_server_file_is_not_collected(client: Client, server: Server) -> None:
    code = textwrap.dedent(f"""
        import os
        os.symlink({str(server.db_path)!r}, 'store.db')
        os.symlink('/etc/passwd', 'passwd')
        os.symlink({str(server.data_dir)!r}, 'data_dir')
        print(os.path.islink('store.db'), os.path.islink('passwd'), os.path.islink('data_dir'))
        _ = open('real.txt', 'w').write('ok')
    """)
    answer = client.eval(code)
    assert answer["stdout"] == "True True True\n", answer  # the links were really there
    assert sorted(by_name(answer)) == ["real.txt"]
    for name in ("store.db", "passwd", "data_dir/singlecell.db"):
        with pytest.raises(ClientError) as caught:
            client.file(f"/files/{answer['id']}/{name}")
        assert caught.value.status == 404


def test_a_hard_link_to_a_server_file_is_not_collected(client: Client, server: Server,
                                                       active_layers: set[str]) -> None:
    code = textwrap.dedent(f"""
        import os
        try:
            os.link({str(server.db_path)!r}, 'store.db')
            print(os.stat('store.db').st_nlink >= 2)
        except OSError as exc:
            print(type(exc).__name__)
    """)
    answer = client.eval(code)
    # with the filesystem layer the DB is not even there to link to; without it the link is
    # made, and must still not be collected
    expected = "FileNotFoundError\n" if "filesystem" in active_layers else "True\n"
    assert answer["stdout"] == expected, answer
    assert by_name(answer) == {}
    with pytest.raises(ClientError) as caught:
        client.file(f"/files/{answer['id']}/store.db")
    assert caught.value.status == 404


@pytest.mark.parametrize("name", ["with space.txt", "ünïcödé €.txt", "percent%20sign.txt", "q?uestion#hash.txt",
                                  "sub dir/naïve file.txt"])
def test_a_file_name_that_needs_url_quoting_round_trips(client: Client, name: str) -> None:
    code = f"import os\nos.makedirs(os.path.dirname({name!r}) or '.', exist_ok=True)\n" \
           f"_ = open({name!r}, 'w', encoding='utf-8').write({name!r})"
    answer = client.eval(code)
    files = by_name(answer)
    assert list(files) == [name]
    url = str(files[name]["url"])
    parts = urllib.parse.urlsplit(url)
    assert " " not in url and not parts.query and not parts.fragment, url
    assert urllib.parse.unquote(parts.path) == f"/files/{answer['id']}/{name}"
    assert client.file(url) == name.encode()


def test_a_file_the_request_did_not_write_is_404(client: Client) -> None:
    answer = client.eval("_ = open('exists.txt', 'w').write('1')")
    status, headers, body = client.request("GET", f"/files/{answer['id']}/missing.txt")
    assert status == 404
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "not_found"
