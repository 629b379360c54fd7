"""What keeps the workbench's port safe: the access token and the rule that no path from a request leaves its folder.

The token works as Jupyter's does: the address printed at start carries it (``?token=...``); the first visit turns
it into a cookie, so links inside the page need no token. Requests that change something must also send it in the
``X-Snapkit-Token`` header, which a page on another site cannot set, so a link or a form elsewhere can never move,
delete or record anything (no CSRF through a GET link or a cross-site form).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from pathlib import Path, PurePosixPath

from snapkit.errors import SnapkitError

TOKEN_QUERY = "token"
TOKEN_COOKIE = "snapkit_token"
TOKEN_HEADER = "X-Snapkit-Token"
# 32 random bytes: not guessable from the network in any useful time.
TOKEN_BYTES = 32


class PathRefused(SnapkitError):
    """A path from a request that would leave its folder (``..``, absolute, a symlink out): refused with a 403."""


def new_token() -> str:
    """A fresh random access token, URL-safe."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_matches(given: str | None, token: str) -> bool:
    """True when ``given`` is the token (compared in constant time, so timing tells nothing)."""
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def is_loopback(host: str) -> bool:
    """True for ``127.0.0.1``, ``::1``, ``localhost``: addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, token_required: bool) -> None:
    """Refuse, in one sentence, to listen beyond this machine without the token."""
    if not token_required and not is_loopback(host):
        raise SnapkitError(
            f"--host {host} is reachable from other machines, so the access token cannot be turned off; "
            "drop --no-token or listen on 127.0.0.1."
        )


def inside(root: Path, relative: str) -> Path:
    """``root/relative`` if it stays inside ``root``; ``PathRefused`` otherwise.

    ``relative`` is a ``/``-separated path as the page sends it. Refused: an absolute path, a ``..`` part, a hidden
    part (``.trash``, the relabel log: the page never names them), and anything that resolves outside ``root``
    through a symlink. The path need not exist (the caller says whether it must).
    """
    if not relative or "\\" in relative or "\0" in relative:
        raise PathRefused(f"The path {relative!r} is not a plain relative path; pick the file from the page.")
    parts = PurePosixPath(relative)
    if parts.is_absolute() or any(part in ("..", ".") or part.startswith(".") for part in parts.parts):
        raise PathRefused(f"The path {relative!r} leaves its folder; pick the file from the page.")
    base = root.resolve()
    path = base.joinpath(*parts.parts)
    if not path.resolve().is_relative_to(base):
        raise PathRefused(f"The path {relative!r} leads outside {root} through a link; it is refused.")
    return path
