"""Input errors with a location, shared by every adapter (JSON field path, CSV line, FHIR id, HL7 segment)."""

from __future__ import annotations


class InputError(ValueError):
    """Input that parses but cannot be interpreted. `errors` maps a location to its messages."""

    def __init__(self, errors: dict[str, list[str]], detail: str | None = None):
        self.errors = errors
        self.detail = detail or _summarise(errors)
        super().__init__(self.detail)


def _summarise(errors: dict[str, list[str]]) -> str:
    if not errors:
        return "The input could not be interpreted."
    path, messages = next(iter(errors.items()))
    more = len(errors) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{path}: {messages[0]}{suffix}"
