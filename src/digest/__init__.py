"""digest: email digests and Atom feeds of practices newly added to the themes people follow."""

from __future__ import annotations

__version__ = "0.1.0"
