"""Which local addresses WebRTC offers as ICE candidates: only those of the interfaces the service serves.

aioice gathers a host candidate on every interface but loopback, so a service bound to 127.0.0.1 would list
the machine's LAN addresses in its answers, and a peer on loopback (or in a network namespace with only `lo`
up) would have nothing to connect to. `gather_only` narrows aioice's address lookup. The switch is
process-wide: while several users are active the union of their addresses is gathered, and aioice's own
lookup comes back when the last one leaves.
"""
from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import aioice.ice

ANY_ADDRESS = ("", "0.0.0.0", "::")    # bind hosts that mean every interface

_lock = threading.Lock()
_active: list[tuple[str, ...]] = []      # the addresses of each active user
_original = aioice.ice.get_host_addresses


def ice_addresses(bind_host: str, configured: str = "", loopback_only: bool = False) -> tuple[str, ...] | None:
    """The addresses to gather candidates on; None means every interface (aioice's own choice).

    `configured` (comma-separated IP addresses, "*" for every interface) wins; otherwise the HTTP bind
    address: 127.0.0.1 gives 127.0.0.1, 0.0.0.0 or :: every interface, a name the addresses it resolves to.
    Raises ValueError for an address that is not one of this machine's.
    """
    if loopback_only:
        return ("127.0.0.1",)
    names = [name.strip() for name in configured.split(",") if name.strip()]
    if names == ["*"]:
        return None
    if not names:
        if bind_host in ANY_ADDRESS:
            return None
        names = [bind_host] if is_address(bind_host) else _resolve(bind_host)
    for name in names:
        _check_local(name)
    return tuple(dict.fromkeys(str(ipaddress.ip_address(name)) for name in names))


@contextmanager
def gather_only(addresses: Sequence[str] | None) -> Iterator[None]:
    """While active, every new ICE agent in this process gathers host candidates on `addresses` only.

    None leaves aioice's own lookup (every interface but loopback) alone.
    """
    if addresses is None:
        yield
        return
    entry = tuple(addresses)
    with _lock:
        _active.append(entry)
        aioice.ice.get_host_addresses = _gather_active
    try:
        yield
    finally:
        with _lock:
            _active.remove(entry)
            if not _active:
                aioice.ice.get_host_addresses = _original


def _gather_active(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    with _lock:
        chosen = dict.fromkeys(address for entry in _active for address in entry)
    wanted = {4: use_ipv4, 6: use_ipv6}
    return [address for address in chosen if wanted[ipaddress.ip_address(address).version]]


def is_address(name: str) -> bool:
    """An IP address (v4 or v6), not a name."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _resolve(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except socket.gaierror as error:
        raise ValueError(f"cannot resolve the bind host {host!r} to pick ICE addresses: {error}") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def _check_local(address: str) -> None:
    """An address WebRTC can bind to here, or ValueError saying which one is not."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    except ValueError:
        raise ValueError(f"ICE address {address!r} is not an IP address") from None
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
    except OSError as error:
        raise ValueError(f"ICE address {address!r} is not one of this machine's: {error.strerror}") from None
