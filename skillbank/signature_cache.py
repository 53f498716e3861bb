"""Signatures read once per source text, kept under the bank's state folder.

Reading a skill's signature parses its source with libcst (`skillbank.signature`), and
importing libcst alone takes longer than a short command should (``skillbank list``, ``run``).
A skill's signature depends on its source text only, so `SignatureCache` keeps each one
under the SHA-256 of that text in one JSON file, ``<state_dir>/signatures.json``: when
nothing changed, loading the library reads that file and never imports libcst. A source it
has not seen is parsed (importing libcst then) and added; the file is rewritten, whole and
atomically, when the process has added something (`SignatureCache.save`); a read of the whole
library drops the signatures of sources no skill has any more (`SignatureCache.keep_only_used`).

The file is local state, like the ledger: never committed, and safe to delete (it is rebuilt
on the next read). A file that cannot be read, or was written by another version of this
format (`FORMAT`), is ignored; one that cannot be written only costs the parse next time. A
source whose signature cannot be read is never cached: the error is raised each time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from skillbank.skill import Signature

__all__ = ["CACHE_FILE", "FORMAT", "SignatureCache"]

#: The cache's file name inside the state folder.
CACHE_FILE = "signatures.json"
#: Bumped when `skillbank.signature` reads signatures differently, so old entries are dropped.
FORMAT = 1


class SignatureCache:
    """``source -> Signature``, remembered by content hash in ``path`` (see the module).

    Args:
        path: The JSON file (created on the first `save` that has something to write).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] | None = None
        self._added = False
        self._lock = threading.Lock()  # a server loads skills from several threads
        self._used: set[str] = set()  # the keys this process read or added

    def _load(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if self._entries is None:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    data = None
                entries = data.get("signatures") if isinstance(data, dict) else None
                fits = isinstance(data, dict) and data.get("format") == FORMAT
                self._entries = entries if fits and isinstance(entries, dict) else {}
            return self._entries

    def read(self, source: str) -> Signature:
        """The signature of ``source``: from the cache, or parsed (and remembered).

        Raises:
            Whatever `skillbank.signature.read_signature` raises for a source it cannot read.
        """
        key = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
        entries = self._load()
        with self._lock:
            self._used.add(key)
        known = entries.get(key)
        if known is not None:
            try:
                return Signature.from_json(known)
            except (KeyError, TypeError, ValueError):
                pass  # damaged: read it again (and overwrite it)
        from skillbank.signature import read_signature  # libcst: only for a new source

        signature = read_signature(source)
        with self._lock:
            entries[key] = signature.to_json()
            self._added = True
        return signature

    def keep_only_used(self) -> None:
        """Forget the signatures this process has not read: after a read of the whole
        library, those are of sources no skill has any more (the next `save` writes it)."""
        with self._lock:
            if self._entries is not None and set(self._entries) - self._used:
                self._entries = {k: v for k, v in self._entries.items() if k in self._used}
                self._added = True

    def save(self) -> None:
        """Write the file if signatures were added since it was read (errors are ignored:
        the cache only saves time)."""
        with self._lock:
            if not self._added or self._entries is None:
                return
            self._added = False
            # Not key-sorted: a schema's "properties" keep the parameters' order.
            data = json.dumps({"format": FORMAT, "signatures": self._entries})
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(data)
                os.replace(tmp, self.path)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
