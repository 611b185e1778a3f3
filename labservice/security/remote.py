"""Where a request comes from: the peer's address, or the client's behind proxies named in TRUSTED_PROXIES.

`X-Forwarded-For` and `X-Forwarded-Proto` are anyone's to write, so they are believed only when the peer
that sent the request is a trusted proxy (TRUSTED_PROXIES: addresses or networks, comma-separated, e.g.
`127.0.0.1, 10.0.0.0/8`). The chain is then read right to left, skipping trusted proxies: the first
address that is not one is the client. With TRUSTED_PROXIES empty (the default) the headers are ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from flask import current_app, request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=32)
def parse_networks(setting: str) -> tuple[Network, ...]:
    """'127.0.0.1, 10.0.0.0/8' -> networks; raises ValueError naming a part that is not an address."""
    networks = []
    for part in setting.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"TRUSTED_PROXIES: {part!r} is not an IP address or network") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # 192.0.2.1:5000
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: str, networks: Iterable[Network]) -> bool:
    parsed = _address(address)
    return parsed is not None and any(parsed in network for network in networks)


def client_address(environ: Mapping[str, Any], trusted_proxies: str) -> str | None:
    """The client's address for this WSGI environ (see the module docstring)."""
    peer = environ.get("REMOTE_ADDR")
    networks = parse_networks(trusted_proxies or "")
    if not networks or not peer or not _trusted(peer, networks):
        return peer
    forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
    chain = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(chain):
        if _address(hop) is None:  # garbage in the header: stop believing it here
            return peer
        if not _trusted(hop, networks):
            return str(_address(hop))
        peer = hop
    return str(_address(peer)) if _address(peer) else peer


def forwarded_https(environ: Mapping[str, Any], trusted_proxies: str) -> bool:
    """Whether the client used https: the request's scheme, or a trusted proxy's X-Forwarded-Proto."""
    if environ.get("wsgi.url_scheme") == "https":
        return True
    networks = parse_networks(trusted_proxies or "")
    peer = environ.get("REMOTE_ADDR")
    if not networks or not peer or not _trusted(peer, networks):
        return False
    proto = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
    return proto == "https"


def remote_address() -> str | None:
    """This request's client address (TRUSTED_PROXIES applied)."""
    return client_address(request.environ, current_app.config.get("TRUSTED_PROXIES", ""))


def is_https() -> bool:
    return forwarded_https(request.environ, current_app.config.get("TRUSTED_PROXIES", ""))
