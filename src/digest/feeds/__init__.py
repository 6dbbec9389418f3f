"""Atom feeds (RFC 4287): one per theme and one for all practices."""
