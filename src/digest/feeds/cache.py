"""Rendered feed documents kept in the process, keyed by their path and validators: a 200 for a document whose
store has not changed since it was last rendered is served from here, already compressed if the client takes gzip.
Bounded by bytes held (least recently used out first); a change in the store gives new validators, so a stale
document is never served, only left to age out."""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass

from cachetools import LRUCache

# Bytes of documents (plain and gzipped) held at most per process.
LIMIT = 32 * 1024 * 1024


@dataclass(frozen=True)
class Cached:
    data: bytes
    gzipped: bytes

    @property
    def size(self) -> int:
        return len(self.data) + len(self.gzipped)


def compressed(data: bytes) -> bytes:
    # mtime=0: the same document gives the same gzip bytes, in every process.
    return gzip.compress(data, compresslevel=6, mtime=0)


class FeedCache:
    def __init__(self, limit: int = LIMIT) -> None:
        self._cache: LRUCache[tuple[str, str], Cached] = LRUCache(maxsize=limit, getsizeof=lambda c: c.size)
        self._lock = threading.Lock()

    def get(self, path: str, etag: str) -> Cached | None:
        with self._lock:
            return self._cache.get((path, etag))

    def put(self, path: str, etag: str, data: bytes) -> Cached:
        cached = Cached(data, compressed(data))
        if cached.size <= self._cache.maxsize:
            with self._lock:
                self._cache[(path, etag)] = cached
        return cached
