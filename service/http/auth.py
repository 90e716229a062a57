"""API keys: a file of SHA-256 hex digests of accepted keys, one a line (``#`` comments allowed).

Only digests are stored, so the file is no secret worth stealing; a presented key is hashed and
compared with every digest in constant time (``hmac.compare_digest``, no early exit).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

DIGEST = re.compile(r"^[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    def __init__(self, digests: list[str]):
        if not digests:
            raise ValueError("the API keys file has no digest: nobody could call the API")
        self.digests = [bytes.fromhex(digest) for digest in digests]

    @classmethod
    def from_file(cls, path: Path) -> ApiKeys:
        digests = []
        for number, line in enumerate(Path(path).read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip().lower()
            if not line:
                continue
            if not DIGEST.match(line):
                raise ValueError(f"{path}:{number}: not a SHA-256 hex digest (run `portraitsr hash-key` to make one)")
            digests.append(line)
        return cls(digests)

    def accepts(self, authorization: str | None) -> bool:
        """True when the header is ``Bearer <key>`` for an accepted key."""
        scheme, _, key = (authorization or "").partition(" ")
        presented = hashlib.sha256(key.strip().encode()).digest()
        matched = False
        for digest in self.digests:
            matched |= hmac.compare_digest(presented, digest)
        return matched and scheme.lower() == "bearer" and bool(key.strip())
