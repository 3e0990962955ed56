"""API keys: who may run scripts. Shared by every adapter that admits executions (HTTP, MCP).

Keys are compared by their SHA-256 digests with `hmac.compare_digest`, against every
configured key, so the time taken says nothing about how much of a guess was right or which
key was close. Keys never appear in logs, reprs or error messages."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

BEARER = "bearer"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


class ApiKeys:
    """The configured keys; with none configured, every caller is admitted."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._digests = tuple(_digest(key) for key in dict.fromkeys(keys))

    @property
    def required(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"ApiKeys(<{len(self._digests)} key(s)>)"

    def admits(self, key: str | None) -> bool:
        if not self._digests:
            return True
        if key is None:
            return False
        offered = _digest(key)
        matched = False
        for digest in self._digests:  # no early exit: every key costs the same
            matched |= hmac.compare_digest(offered, digest)
        return matched

    def admits_authorization(self, header: str | None) -> bool:
        """Whether an `Authorization` header value carries an admitted bearer key."""
        return self.admits(bearer_token(header))


def bearer_token(header: str | None) -> str | None:
    """The token of `Authorization: Bearer <token>` (scheme case-insensitive), else None."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != BEARER or not token:
        return None
    return token


def parse_keys(text: str, separators: str = ",") -> list[str]:
    """Keys from a comma-separated variable or a file of one key per line; blank entries and
    lines starting with '#' are ignored. Raises ValueError for a key with inner whitespace."""
    for separator in separators:
        text = text.replace(separator, "\n")
    keys = []
    for line in text.splitlines():
        key = line.strip()
        if not key or key.startswith("#"):
            continue
        if any(ch.isspace() for ch in key):
            raise ValueError("a key contains whitespace")
        keys.append(key)
    return keys
