"""Read from the CDS client's FHIR server when prefetch data is missing: `FhirClient.get(relative)`.

`fhirServer` is a URL chosen by whoever calls the service, so fetching from it is a server-side request
on their behalf (SSRF). The defences, in the order a fetch meets them:

1. **Allowlist.** Each CDS client (an API key, a JWT issuer) has its own list of FHIR server base URLs
   (`CDS_FHIR_SERVERS`, read by `parse_fhir_servers`). A `fhirServer` not on the caller's list is never
   contacted: no DNS look-up, no connection.
2. **Addresses after resolution.** The host is resolved once and *every* address is checked: loopback,
   link-local, private, shared, reserved, multicast and unspecified addresses are refused unless the
   allowlisted URL names that address literally (`http://10.1.2.3/fhir`) or it lies in
   `CDS_FHIR_PRIVATE_NETWORKS`. The connection then goes to the checked address (the Host header and TLS
   name stay the URL's host), so a second, different DNS answer (rebinding) is never used.
3. **No redirects.** Any answer but 200 is a failure; a 3xx is not followed.
4. **Caps.** One deadline for all of a call's fetches (`CDS_FHIR_TIMEOUT`), enforced by closing the socket
   when it passes, so a server that drips bytes cannot hold a worker; at most `CDS_FHIR_MAX_BYTES` read.

Every failure raises `FhirFetchError`. Its `reason` is for the service's log (never the token or the
patient's path); the caller answers one generic message (`GENERIC_FAILURE`), so a refused URL, a closed
port, an unresolvable host, a redirect and a timeout look alike to the caller: the service is no port
scanner. The access token from `fhirAuthorization` is sent as `Authorization: Bearer` to the allowlisted
server only.

Standard library only (http.client, socket, ipaddress).
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

FHIR_JSON = "application/fhir+json"
#: Largest answer read from the FHIR server unless configured (a searchset of 100 Observations is ~200 kB).
DEFAULT_MAX_BYTES = 4 * 1024 * 1024
#: What the caller is told for every failure to read from fhirServer, whatever the cause.
GENERIC_FAILURE = (
    "The data could not be read from fhirServer: it is not a FHIR server this CDS client may use, "
    "or it did not answer a FHIR resource in time. Send the data as prefetch."
)
#: The allowlist key that applies to every CDS client.
ANY_CLIENT = "*"
FETCH_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
READ_CHUNK = 64 * 1024

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: (host, port) -> the addresses it resolves to, as text (socket.getaddrinfo by default).
Resolver = Callable[[str, int], list[str]]


class FhirFetchError(Exception):
    """The FHIR server could not give the resource. `reason` is for the log; callers show GENERIC_FAILURE."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize_base_url(url: str) -> str | None:
    """A FHIR base URL in one spelling (scheme and host lower case, default port dropped, no trailing slash),
    or None when it is not an absolute http(s) URL without credentials, query or fragment."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if (
        scheme not in FETCH_SCHEMES
        or not host
        or parts.username is not None
        or parts.password is not None
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        return None
    host = f"[{host}]" if ":" in host else host
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def parse_fhir_servers(config: str | Mapping[str, Any] | None) -> dict[str, frozenset[str]]:
    """CDS_FHIR_SERVERS (JSON: {client: [base URL, ...]}) -> {client: normalized base URLs}.

    A client is `api_key:<key name>`, `cds_client:<JWT iss>` or `*` (every client). A mistake raises
    ValueError naming the client and the URL."""
    if not config:
        return {}
    try:
        raw = json.loads(config) if isinstance(config, str) else config
    except json.JSONDecodeError as error:
        raise ValueError(f"CDS_FHIR_SERVERS is not JSON: {error.msg}") from None
    if not isinstance(raw, Mapping):
        raise ValueError('CDS_FHIR_SERVERS must be a JSON object: {"api_key:<name>": ["https://fhir.example/r4"]}')
    out: dict[str, frozenset[str]] = {}
    for client, urls in raw.items():
        if isinstance(urls, str) or not isinstance(urls, list):
            raise ValueError(f"CDS_FHIR_SERVERS[{client!r}] must be a list of FHIR server base URLs")
        normalized = []
        for url in urls:
            base = normalize_base_url(url) if isinstance(url, str) else None
            if base is None:
                raise ValueError(
                    f"CDS_FHIR_SERVERS[{client!r}]: {url!r} is not an absolute http(s) URL "
                    "without credentials, query or fragment"
                )
            normalized.append(base)
        out[str(client)] = frozenset(normalized)
    return out


def parse_private_networks(setting: str | None) -> tuple[Network, ...]:
    """CDS_FHIR_PRIVATE_NETWORKS ('10.20.0.0/16, fd00::/8') -> networks; ValueError naming a bad part."""
    networks = []
    for part in (setting or "").replace(";", ",").split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"CDS_FHIR_PRIVATE_NETWORKS: {part.strip()!r} is not an IP network") from None
    return tuple(networks)


def allowed_for(servers: Mapping[str, frozenset[str]], client_ids: Iterable[str]) -> frozenset[str]:
    """The base URLs a client may use: its own entries and those for every client (`*`)."""
    allowed = set(servers.get(ANY_CLIENT, ()))
    for client in client_ids:
        allowed |= servers.get(client, frozenset())
    return frozenset(allowed)


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to for a TCP connection (the system resolver)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:
        raise FhirFetchError(f"{host} does not resolve ({error})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public(address: Address) -> bool:
    """A globally routable unicast address (not loopback, link-local, private, shared, reserved...)."""
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class FhirAccess:
    """What one call may fetch: the client's allowlisted base URLs, extra networks, caps, and a deadline."""

    allowed: frozenset[str] = frozenset()
    private_networks: tuple[Network, ...] = ()
    timeout: float = 3.0
    max_bytes: int = DEFAULT_MAX_BYTES
    resolver: Resolver = resolve
    #: TLS settings for https servers; None: the system's trusted CAs, host name checked.
    tls: ssl.SSLContext | None = None
    clock: Callable[[], float] = time.monotonic
    log: Callable[[str], None] = field(default=lambda message: None)

    def client(self, base_url: str, access_token: str | None) -> FhirClient:
        return FhirClient(base_url, access_token, self, deadline=self.clock() + self.timeout)


class FhirClient:
    """GETs under one FHIR base URL, within one FhirAccess and one deadline (see the module docstring)."""

    def __init__(self, base_url: str, access_token: str | None, access: FhirAccess, *, deadline: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.access_token = access_token
        self.access = access
        self.deadline = deadline
        self.failed: FhirFetchError | None = None

    def url(self, relative: str) -> str:
        """The absolute URL of a relative FHIR request, its query percent-encoded (`|` -> %7C)."""
        path, _, query = relative.partition("?")
        url = f"{self.base_url}/{path.lstrip('/')}"
        return f"{url}?{quote(query, safe='=&,')}" if query else url

    def get(self, relative: str) -> dict[str, Any]:
        """The resource at `relative`; FhirFetchError for any failure (and for every call after one)."""
        if self.failed is not None:
            raise self.failed  # one failure ends the fetching for this call: no second wait
        try:
            return self._get(relative)
        except FhirFetchError as error:
            self.failed = error
            self.access.log(f"CDS Hooks: fhirServer {self.base_url} not read: {error.reason}")
            raise

    def _get(self, relative: str) -> dict[str, Any]:
        base = normalize_base_url(self.base_url)
        if base is None or base not in self.access.allowed:
            raise FhirFetchError("not on this CDS client's allowlist (CDS_FHIR_SERVERS)")
        parts = urlsplit(self.url(relative))
        scheme, host = parts.scheme.lower(), parts.hostname or ""
        port = parts.port or DEFAULT_PORTS[scheme]
        addresses = self._checked_addresses(host, port)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"Accept": FHIR_JSON}
        if self.access_token:
            headers["Authorization"] = f"Bearer {self.access_token}"
        raw = self._fetch(scheme, host, port, addresses, target, headers)
        try:
            resource = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise FhirFetchError("the answer is not JSON") from None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise FhirFetchError("the answer is not a FHIR resource")
        return resource

    def _checked_addresses(self, host: str, port: int) -> list[str]:
        """Resolve once; refuse if any address is not public and not allowed; the addresses to connect to."""
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        found = [host] if literal is not None else self.access.resolver(host, port)
        if not found:
            raise FhirFetchError(f"{host} resolves to no address")
        for text in found:
            try:
                address = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError:
                raise FhirFetchError(f"{host} resolves to {text!r}, not an address") from None
            mapped = getattr(address, "ipv4_mapped", None)
            address = mapped or address
            if literal is not None:
                continue  # the allowlisted URL names this very address
            if not is_public(address) and not any(address in net for net in self.access.private_networks):
                raise FhirFetchError(
                    f"{host} resolves to {address}, a non-public address outside CDS_FHIR_PRIVATE_NETWORKS"
                )
        return found

    def _remaining(self) -> float:
        left = self.deadline - self.access.clock()
        if left <= 0:
            raise FhirFetchError("no time left (CDS_FHIR_TIMEOUT)")
        return left

    def _fetch(
        self, scheme: str, host: str, port: int, addresses: list[str], target: str, headers: dict[str, str]
    ) -> bytes:
        last: Exception | None = None
        for address in addresses:
            connection = _connection(scheme, host, port, address, self._remaining(), self.access.tls)
            timer = threading.Timer(self._remaining(), _abort, (connection,))
            timer.daemon = True
            timer.start()
            try:
                connection.request("GET", target, headers=headers)
                answer = connection.getresponse()
                return self._read(answer)
            except FhirFetchError:
                raise
            except (OSError, http.client.HTTPException, ValueError) as error:  # ValueError: a URL http.client refuses
                if self.access.clock() >= self.deadline:
                    raise FhirFetchError("no answer within CDS_FHIR_TIMEOUT") from None
                last = error
            finally:
                timer.cancel()
                connection.close()
        raise FhirFetchError(f"could not connect ({type(last).__name__}: {last})")

    def _read(self, answer: http.client.HTTPResponse) -> bytes:
        if answer.status != 200:
            raise FhirFetchError(f"answered HTTP {answer.status} (redirects are not followed)")
        limit = self.access.max_bytes
        length = answer.getheader("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > limit:
            raise FhirFetchError(f"announced {length} bytes, more than CDS_FHIR_MAX_BYTES ({limit})")
        chunks: list[bytes] = []
        size = 0
        while True:
            self._remaining()
            chunk = answer.read1(READ_CHUNK)  # what has arrived: a dripping server cannot stretch one read
            if not chunk:
                if self.access.clock() >= self.deadline:  # the socket was shut by the deadline
                    raise FhirFetchError("no whole answer within CDS_FHIR_TIMEOUT")
                if answer.length:  # Content-Length promised more than arrived
                    raise FhirFetchError("the answer ended early")
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise FhirFetchError(f"answered more than CDS_FHIR_MAX_BYTES ({limit})")
            chunks.append(chunk)


def _connection(
    scheme: str, host: str, port: int, address: str, timeout: float, tls: ssl.SSLContext | None
) -> http.client.HTTPConnection:
    """A connection that names `host` (Host header, TLS server name and certificate check) but connects to
    the already checked `address`, never to a fresh DNS answer."""
    connection: http.client.HTTPConnection
    if scheme == "https":
        connection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=tls or ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)

    def connect_checked(_address: Any, timeout: Any = None, source_address: Any = None) -> socket.socket:
        return socket.create_connection((address, port), timeout, source_address)

    connection._create_connection = connect_checked  # type: ignore[attr-defined]
    return connection


def _abort(connection: http.client.HTTPConnection) -> None:
    """The deadline passed: shut the socket, which ends any read or write blocked on it."""
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)
