"""Read from the CDS client's FHIR server when prefetch data is missing: `FhirClient.get(relative)`.

Standard library only (urllib). The access token from `fhirAuthorization` goes in an
`Authorization: Bearer` header that is not repeated on a redirect (urllib's unredirected header),
so a redirect to another host cannot collect it. Timeouts are short: a CDS service should answer
in about 500 ms. Any failure (refused connection, timeout, HTTP error, not JSON, too large) raises
`FhirFetchError` with a message that names the URL but never the token.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

FHIR_JSON = "application/fhir+json"
#: Largest answer read from the FHIR server (a searchset of 100 Observations is about 200 kB).
MAX_ANSWER_BYTES = 16 * 1024 * 1024


class FhirFetchError(Exception):
    """The FHIR server could not give the resource; the message says why (no token in it)."""


class FhirClient:
    def __init__(self, base_url: str, access_token: str | None, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.access_token = access_token
        self.timeout = timeout

    def url(self, relative: str) -> str:
        """The absolute URL of a relative FHIR request, its query percent-encoded (`|` -> %7C)."""
        path, _, query = relative.partition("?")
        url = f"{self.base_url}/{path.lstrip('/')}"
        return f"{url}?{quote(query, safe='=&,')}" if query else url

    def get(self, relative: str) -> dict[str, Any]:
        url = self.url(relative)
        request = urllib.request.Request(url, headers={"Accept": FHIR_JSON})
        if self.access_token:
            request.add_unredirected_header("Authorization", f"Bearer {self.access_token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                raw = answer.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as error:
            raise FhirFetchError(f"GET {url} answered HTTP {error.code}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise FhirFetchError(f"GET {url} failed: {reason}") from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise FhirFetchError(f"GET {url} answered more than {MAX_ANSWER_BYTES} bytes")
        try:
            resource = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise FhirFetchError(f"GET {url} did not answer JSON") from None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise FhirFetchError(f"GET {url} did not answer a FHIR resource")
        return resource
