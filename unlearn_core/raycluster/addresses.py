"""Ray addresses: parsing ``HOST:PORT`` / ``ray://HOST:PORT`` / ``auto``, loopback mode (Ray's node address kept
on 127.0.0.1, see :mod:`unlearn_core.raycluster`), and the TCP probe that settles an unreachable address at once."""

from __future__ import annotations

import os
import socket
import sys

from unlearn_core.errors import UnlearnError

#: Ray reads it at import; "0" makes ``get_node_ip_address`` answer the loopback address
#: (see :mod:`unlearn_core.raycluster`).
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: Longest wait for the TCP connection to the address's port.
PROBE_TIMEOUT_S = 5.0

_ORIGINAL_ENV: dict[str, str | None] = {}


class RayClusterError(UnlearnError):
    """Ray cannot be started or the cluster at an address cannot be joined."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def split_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``"HOST:PORT"``, ``"ray://HOST:PORT"`` or ``"[V6]:PORT"``; None for ``"auto"``.

    Raises :class:`RayClusterError` for text that is neither.
    """
    text = address.strip()
    if text == "auto":
        return None
    if text.startswith("ray://"):
        text = text[len("ray://"):]
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise RayClusterError(f"Ray address {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and every address of 127.0.0.0/8 or ``::1``."""
    host = host.strip("[]")
    return host == "localhost" or host == "::1" or host.startswith("127.")


def set_loopback_mode(on: bool) -> None:
    """Make Ray's node address the loopback one (``on``) or leave Ray's default (see :mod:`unlearn_core.raycluster`)."""
    if LOOPBACK_ENV not in _ORIGINAL_ENV:
        _ORIGINAL_ENV[LOOPBACK_ENV] = os.environ.get(LOOPBACK_ENV)
    if on:
        os.environ[LOOPBACK_ENV] = "0"
    elif _ORIGINAL_ENV[LOOPBACK_ENV] is None:
        os.environ.pop(LOOPBACK_ENV, None)
    else:
        os.environ[LOOPBACK_ENV] = _ORIGINAL_ENV[LOOPBACK_ENV]
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # imported before: the constant was read already, so set it as the variable says
        value = os.environ.get(LOOPBACK_ENV)
        default = not (sys.platform == "darwin" or sys.platform == "win32")
        constants.ENABLE_RAY_CLUSTER = default if value is None else value.lower() in ("1", "true")


def probe(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Open and close one TCP connection to ``host:port``; :class:`RayClusterError` when none opens in time."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except socket.timeout:
        reason = f"no answer within {timeout:g} s"
    except OSError as error:
        reason = error.strerror or _first_line(error)
    raise RayClusterError(f"cannot reach the Ray cluster at {host}:{port}: {reason}")


def check_address(address: str, probe_seconds: float = PROBE_TIMEOUT_S) -> None:
    """Fail early, before any work, for an address that is malformed or where no TCP connection opens.

    ``"auto"`` is not probed (Ray finds the address itself, within :func:`connect`'s bound).
    """
    hostport = split_address(address)
    if hostport is not None:
        probe(hostport[0], hostport[1], probe_seconds)
