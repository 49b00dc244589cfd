"""The FileStore contract (filestore/base.py), run once against every backend.

A backend joins by adding an entry to ``BACKENDS``: a function from the test's ``tmp_path`` to a
fresh, empty store URL. One that needs a server (``postgresql``) skips when it is absent and
hands out an emptied database.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from filestore import (
    DirectoryFileStore,
    FileStore,
    FileStoreError,
    GridFileStore,
    InvalidFileName,
    SqlFileStore,
    open_filestore,
)
from filestore.base import UnknownFileStore
from tests import mongo, postgres

BACKENDS: dict[str, Callable[[Path], str]] = {
    "sql": lambda tmp_path: f"sqlite:///{tmp_path / 'db' / 'files.db'}",  # parent made by create()
    "dir": lambda tmp_path: f"dir:{tmp_path / 'files'}",
}

BAD_NAMES = [
    "",
    "/etc/passwd",
    "..",
    "../outside",
    "a/../../outside",
    ".",
    "./a",
    "a//b",
    "a/",
    "a\x00b",
    "a\\b",
    "\ud800",  # a lone surrogate is not UTF-8
    "x" * 1025,
    "é" * 513,  # 513 characters, 1026 bytes
]
BAD_REQUEST_IDS = [*BAD_NAMES, "a/b", "x" * 256]


@pytest.fixture(params=[*sorted(BACKENDS), pytest.param("postgresql", marks=pytest.mark.postgres), "mongodb"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":  # BYTEA in a database of the test's own
        with postgres.database() as database_url:
            yield database_url
        return
    if request.param == "mongodb":  # GridFS: on a real server if SINGLECELL_TEST_MONGODB names one, else mongomock
        with mongo.database() as database_url:
            yield database_url
        return
    yield BACKENDS[request.param](tmp_path)


@pytest.fixture
def store(url: str) -> Iterator[FileStore]:
    s = open_filestore(url)
    s.create()
    yield s
    s.close()


# -- the contract -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"\x00\x01\xff\x00" + bytes(range(256)) + b"\x00", b"", os.urandom(5 * 2**20)],
    ids=["binary-with-NULs", "empty", "5MiB"],
)
def test_put_then_get_returns_the_same_bytes(store: FileStore, data: bytes) -> None:
    location = store.put("req1", "out.bin", data)
    assert isinstance(location, str) and location
    assert store.get("req1", "out.bin") == data


def test_put_replaces_what_was_there_with_shorter_or_longer_bytes(store: FileStore) -> None:
    store.put("req1", "f", b"a long first version")
    store.put("req1", "f", b"short")
    assert store.get("req1", "f") == b"short"
    store.put("req1", "f", b"longer than short")
    assert store.get("req1", "f") == b"longer than short"


def test_get_of_unknown_file_or_request_is_none(store: FileStore) -> None:
    store.put("req1", "there", b"x")
    assert store.get("req1", "missing") is None
    assert store.get("req1", "there/below") is None
    assert store.get("unknown", "there") is None


def test_same_name_under_two_requests_is_kept_apart(store: FileStore) -> None:
    store.put("req1", "plot.png", b"one")
    store.put("req2", "plot.png", b"two")
    assert store.get("req1", "plot.png") == b"one"
    assert store.get("req2", "plot.png") == b"two"


@pytest.mark.parametrize("name", ["résumé.txt", "数据/图.png", "emoji 🎉.csv", "spaces and 'quotes'.txt"])
def test_unicode_names_round_trip(store: FileStore, name: str) -> None:
    store.put("req1", name, name.encode())
    assert store.get("req1", name) == name.encode()


def test_nested_names_round_trip_and_stay_apart_from_siblings(store: FileStore) -> None:
    files = {"out/data.csv": b"1", "out/sub/deep.txt": b"2", "out.csv": b"3", "data.csv": b"4"}
    for name, data in files.items():
        store.put("req1", name, data)
    for name, data in files.items():
        assert store.get("req1", name) == data


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_rejected_by_put_and_get(store: FileStore, name: str) -> None:
    with pytest.raises(InvalidFileName):
        store.put("req1", name, b"x")
    with pytest.raises(InvalidFileName):
        store.get("req1", name)
    assert store.delete("req1") == 0  # nothing was kept


@pytest.mark.parametrize("request_id", BAD_REQUEST_IDS)
def test_bad_request_ids_are_rejected_by_put_get_and_delete(store: FileStore, request_id: str) -> None:
    with pytest.raises(InvalidFileName):
        store.put(request_id, "f", b"x")
    with pytest.raises(InvalidFileName):
        store.get(request_id, "f")
    with pytest.raises(InvalidFileName):
        store.delete(request_id)


def test_invalid_file_name_is_a_value_error() -> None:
    assert issubclass(InvalidFileName, ValueError)
    assert issubclass(InvalidFileName, FileStoreError)


def test_delete_removes_every_file_of_one_request_only_and_counts_them(store: FileStore) -> None:
    for name in ("a", "b", "nested/c", "nested/deeper/d"):
        store.put("req1", name, b"x")
    store.put("req2", "a", b"kept")
    assert store.delete("req1") == 4
    for name in ("a", "b", "nested/c", "nested/deeper/d"):
        assert store.get("req1", name) is None
    assert store.get("req2", "a") == b"kept"
    assert store.delete("req1") == 0


def test_delete_file_removes_that_file_only(store: FileStore) -> None:
    store.put("req1", "a", b"x")
    store.put("req1", "nested/b", b"y")
    store.put("req2", "a", b"kept")
    assert store.delete_file("req1", "a") is True
    assert store.get("req1", "a") is None and store.get("req1", "nested/b") == b"y"
    assert store.get("req2", "a") == b"kept"
    assert store.delete_file("req1", "a") is False
    assert store.delete_file("never-seen", "a") is False
    with pytest.raises(InvalidFileName):
        store.delete_file("req1", "../a")


def test_delete_of_unknown_request_returns_zero(store: FileStore) -> None:
    assert store.delete("never-seen") == 0


def test_create_is_idempotent_and_keeps_files(store: FileStore) -> None:
    store.put("req1", "f", b"x")
    store.create()
    store.create()
    assert store.get("req1", "f") == b"x"


def test_a_second_instance_on_the_same_url_shares_the_files(store: FileStore, url: str) -> None:
    other = open_filestore(url)
    other.create()
    try:
        store.put("req1", "f", b"from the first")
        assert other.get("req1", "f") == b"from the first"
        other.put("req1", "f", b"from the second")
        assert store.get("req1", "f") == b"from the second"
        assert other.delete("req1") == 1
        assert store.get("req1", "f") is None
    finally:
        other.close()


def _put_many(url: str, worker: int, count: int) -> None:
    s = open_filestore(url)
    try:
        for i in range(count):
            s.put(f"req{i % 3}", f"w{worker}/f{i}", f"{worker}:{i}".encode())
            s.put("shared", "same-name", f"{worker}:{i}".encode())  # every process hits one key
    finally:
        s.close()


def test_several_processes_can_write_one_store_at_once(store: FileStore, url: str) -> None:
    if url.startswith("mongodb:"):
        mongo.need_server("several processes sharing one database")
    workers, count = 4, 25
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done in [pool.submit(_put_many, url, w, count) for w in range(workers)]:
            done.result()  # re-raises a worker's error, e.g. "database is locked"
    for w in range(workers):
        for i in range(count):
            assert store.get(f"req{i % 3}", f"w{w}/f{i}") == f"{w}:{i}".encode()
    assert store.get("shared", "same-name") in {f"{w}:{count - 1}".encode() for w in range(workers)}


# -- open_filestore -----------------------------------------------------------------------


def test_open_filestore_picks_the_backend_by_scheme(tmp_path: Path) -> None:
    assert isinstance(open_filestore(f"dir:{tmp_path}"), DirectoryFileStore)
    assert isinstance(open_filestore(f"sqlite:///{tmp_path}/f.db"), SqlFileStore)
    assert isinstance(open_filestore(f"sqlite+pysqlite:///{tmp_path}/f.db"), SqlFileStore)
    assert isinstance(open_filestore("mongodb://db.example:27017/cells"), GridFileStore)
    assert isinstance(open_filestore("mongodb+srv://cluster.example/cells"), GridFileStore)


def test_open_filestore_resolves_a_relative_dir_against_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = open_filestore("dir:relative/files")
    assert isinstance(s, DirectoryFileStore)
    assert s.root == tmp_path / "relative" / "files"


@pytest.mark.parametrize("url", ["s3://bucket/x", "postgres://user:secret@host/db", "/srv/files"])
def test_open_filestore_names_an_unknown_scheme_and_the_known_ones(url: str) -> None:
    with pytest.raises(UnknownFileStore) as caught:
        open_filestore(url)
    message = str(caught.value)
    assert repr(url.partition(":")[0] if ":" in url else "") in message
    assert all(known in message for known in ("dir:", "sqlite:", "postgresql:"))
    assert "secret" not in message  # a URL's password never reaches a log
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, FileStoreError)


# -- directory backend only ---------------------------------------------------------------


@pytest.fixture
def dir_store(tmp_path: Path) -> DirectoryFileStore:
    s = DirectoryFileStore(tmp_path / "files")
    s.create()
    return s


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside root holding a secret, that no store call may read or change."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(b"secret")
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_dir_location_is_the_path_relative_to_root(dir_store: DirectoryFileStore) -> None:
    location = dir_store.put("req1", "out/data.csv", b"1,2")
    assert location == "req1/out/data.csv"
    assert (dir_store.root / location).read_bytes() == b"1,2"


def test_dir_symlinked_request_folder_is_not_followed(dir_store: DirectoryFileStore, outside: Path) -> None:
    (dir_store.root / "req1").symlink_to(outside)
    with pytest.raises(FileStoreError):
        dir_store.put("req1", "secret.txt", b"overwritten")
    with pytest.raises(FileStoreError):
        dir_store.put("req1", "new/file", b"planted")
    assert dir_store.get("req1", "secret.txt") is None
    assert _snapshot(outside) == {"secret.txt": b"secret"}


def test_dir_symlinked_subfolder_is_not_followed(dir_store: DirectoryFileStore, outside: Path) -> None:
    (dir_store.root / "req1").mkdir()
    (dir_store.root / "req1" / "out").symlink_to(outside)
    with pytest.raises(FileStoreError):
        dir_store.put("req1", "out/secret.txt", b"overwritten")
    assert dir_store.get("req1", "out/secret.txt") is None
    assert _snapshot(outside) == {"secret.txt": b"secret"}


def test_dir_symlinked_file_is_replaced_by_put_not_written_through(
    dir_store: DirectoryFileStore, outside: Path
) -> None:
    (dir_store.root / "req1").mkdir()
    link = dir_store.root / "req1" / "f"
    link.symlink_to(outside / "secret.txt")
    dir_store.put("req1", "f", b"mine")
    assert not link.is_symlink() and link.read_bytes() == b"mine"
    assert _snapshot(outside) == {"secret.txt": b"secret"}


def test_dir_symlinked_file_is_not_followed_by_get(dir_store: DirectoryFileStore, outside: Path) -> None:
    (dir_store.root / "req1").mkdir()
    (dir_store.root / "req1" / "f").symlink_to(outside / "secret.txt")
    assert dir_store.get("req1", "f") is None


def test_dir_get_of_a_folder_or_fifo_is_none_and_does_not_hang(dir_store: DirectoryFileStore) -> None:
    dir_store.put("req1", "out/f", b"x")
    os.mkfifo(dir_store.root / "req1" / "pipe")
    assert dir_store.get("req1", "out") is None
    assert dir_store.get("req1", "pipe") is None


def test_dir_delete_removes_links_never_their_targets(dir_store: DirectoryFileStore, outside: Path) -> None:
    dir_store.put("req1", "f", b"x")
    (dir_store.root / "req1" / "to-dir").symlink_to(outside)
    (dir_store.root / "req1" / "to-file").symlink_to(outside / "secret.txt")
    (dir_store.root / "req2").symlink_to(outside)
    assert dir_store.delete("req1") == 1
    assert dir_store.delete("req2") == 0
    assert not (dir_store.root / "req1").exists() and not (dir_store.root / "req2").is_symlink()
    assert _snapshot(outside) == {"secret.txt": b"secret"}


def test_dir_delete_file_removes_a_link_never_its_target(dir_store: DirectoryFileStore, outside: Path) -> None:
    dir_store.put("req1", "f", b"x")
    (dir_store.root / "req1" / "to-file").symlink_to(outside / "secret.txt")
    (dir_store.root / "req1" / "to-dir").symlink_to(outside)
    assert dir_store.delete_file("req1", "to-file") is True
    assert dir_store.delete_file("req1", "to-dir/secret.txt") is False  # never through a link
    assert _snapshot(outside) == {"secret.txt": b"secret"}


def test_dir_files_and_folders_are_web_readable_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        s = DirectoryFileStore(tmp_path / "files")
        s.create()
        s.put("req1", "out/sub/f.png", b"x")
    finally:
        os.umask(old)
    for folder in (s.root, s.root / "req1", s.root / "req1" / "out", s.root / "req1" / "out" / "sub"):
        assert stat.S_IMODE(folder.lstat().st_mode) == 0o755, folder
    assert stat.S_IMODE((s.root / "req1" / "out" / "sub" / "f.png").lstat().st_mode) == 0o644


def test_dir_put_leaves_no_temporary_files(dir_store: DirectoryFileStore) -> None:
    dir_store.put("req1", "f", b"one")
    dir_store.put("req1", "f", b"two")
    assert os.listdir(dir_store.root / "req1") == ["f"]


def test_dir_store_is_servable_by_path() -> None:
    assert DirectoryFileStore.servable_by_path and not SqlFileStore.servable_by_path
