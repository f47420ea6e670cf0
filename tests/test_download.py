"""nas.data download and archive handling, against a local HTTP server (never the network)."""

from __future__ import annotations

import functools
import io
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from fake_archives import write_cifar_tar_gz

from nas import data
from nas.data import download
from nas.data.archives import md5sum
from nas.errors import UserError

ARCHIVE = "cifar-10-python.tar.gz"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


pytestmark = pytest.mark.usefixtures("fresh_data_cache")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A local HTTP server holding a small real-format cifar-10 archive; yields (base url, md5, arrays)."""
    root = tmp_path_factory.mktemp("served")
    arrays = write_cifar_tar_gz(root / ARCHIVE, "cifar10")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", md5sum(root / ARCHIVE), arrays
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _point_at(monkeypatch, url: str, md5: str) -> None:
    monkeypatch.setitem(download.DOWNLOADS, "cifar10", download.Remote(url=url, md5=md5))


def _everything_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_download_fetches_verifies_and_extracts(served, monkeypatch, tmp_path):
    base, md5, arrays = served
    _point_at(monkeypatch, f"{base}/{ARCHIVE}", md5)
    data_dir = tmp_path / "new" / "dir"  # created on demand
    bundle = data.load("cifar10", data_dir=data_dir, download=True, valid_fraction=0)
    assert np.array_equal(bundle.train.images.numpy(), arrays["train_images"])
    assert np.array_equal(bundle.test.labels.numpy(), arrays["test_labels"])
    # Only the extracted folder remains: no archive, no temp download, no temp extraction folder.
    assert [p.name for p in data_dir.iterdir()] == ["cifar-10-batches-py"]
    # A second load reads the folder and does not download again (the URL now points nowhere).
    data.clear_cache()
    _point_at(monkeypatch, f"{base}/gone.tar.gz", md5)
    assert len(data.load("cifar10", data_dir=data_dir, download=True).test) == len(arrays["test_labels"])


def test_checksum_mismatch_leaves_nothing_behind(served, monkeypatch, tmp_path):
    base, _, _ = served
    _point_at(monkeypatch, f"{base}/{ARCHIVE}", "0" * 32)
    with pytest.raises(UserError) as err:
        data.load("cifar10", data_dir=tmp_path, download=True)
    message = str(err.value)
    assert "checksum" in message and "0" * 32 in message and ARCHIVE in message
    assert _everything_in(tmp_path) == []


def test_http_404_is_a_user_error(served, monkeypatch, tmp_path):
    base, md5, _ = served
    _point_at(monkeypatch, f"{base}/missing.tar.gz", md5)
    with pytest.raises(UserError, match="404"):
        data.load("cifar10", data_dir=tmp_path, download=True)
    assert _everything_in(tmp_path) == []


def test_unreachable_server_is_a_user_error(monkeypatch, tmp_path):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _point_at(monkeypatch, f"http://127.0.0.1:{port}/{ARCHIVE}", "0" * 32)
    with pytest.raises(UserError, match="could not download"):
        data.load("cifar10", data_dir=tmp_path, download=True)
    assert _everything_in(tmp_path) == []


def test_missing_dataset_without_download_says_where_it_looked(tmp_path):
    with pytest.raises(UserError) as err:
        data.load("cifar100", data_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cifar-100-python") in message and "cifar-100-python.tar.gz" in message
    assert "--download" in message and "--data-dir" in message
    assert _everything_in(tmp_path) == []


def test_local_archive_is_verified_and_extracted_in_place(monkeypatch, tmp_path):
    arrays = write_cifar_tar_gz(tmp_path / ARCHIVE, "cifar10")
    _point_at(monkeypatch, "http://127.0.0.1:9/unused", md5sum(tmp_path / ARCHIVE))
    bundle = data.load("cifar10", data_dir=tmp_path, valid_fraction=0)
    assert np.array_equal(bundle.test.images.numpy(), arrays["test_images"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ARCHIVE, "cifar-10-batches-py"])


def test_local_archive_with_wrong_checksum_is_kept_and_reported(monkeypatch, tmp_path):
    write_cifar_tar_gz(tmp_path / ARCHIVE, "cifar10")
    _point_at(monkeypatch, "http://127.0.0.1:9/unused", "0" * 32)
    with pytest.raises(UserError, match="checksum"):
        data.load("cifar10", data_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [ARCHIVE]


def test_archive_without_the_expected_folder_leaves_no_partial_extraction(monkeypatch, tmp_path):
    write_cifar_tar_gz(tmp_path / ARCHIVE, "cifar100")  # a valid tar.gz, but with cifar-100-python/ inside
    _point_at(monkeypatch, "http://127.0.0.1:9/unused", md5sum(tmp_path / ARCHIVE))
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        data.load("cifar10", data_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [ARCHIVE]


class _Terminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_progress_is_shown_only_on_a_terminal(served, monkeypatch, tmp_path, tty):
    base, md5, _ = served
    stderr = _Terminal(tty)
    monkeypatch.setattr("sys.stderr", stderr)
    with download.downloaded(f"{base}/{ARCHIVE}", md5, tmp_path) as path:
        assert md5sum(path) == md5
    assert ("downloading" in stderr.getvalue()) is tty
    assert _everything_in(tmp_path) == []
