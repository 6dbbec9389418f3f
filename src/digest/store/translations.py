"""The same practice in other languages, as sources link them: stored as keys (the identity hash a practice is
known by, in practice_keys), so a link to a version not read yet holds once it arrives. Grouped when planning."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest.store.models import PracticeKey, PracticeTranslation

CHUNK = 500


def link(session: Session, keys: Mapping[int, Iterable[str]]) -> None:
    """Record that each practice (by id) has versions known by these keys; those recorded already are kept."""
    wanted = {(practice_id, key) for practice_id, found in keys.items() for key in found}
    if not wanted:
        return
    ids = sorted({practice_id for practice_id, _ in wanted})
    have: set[tuple[int, str]] = set()
    for start in range(0, len(ids), CHUNK):
        rows = session.execute(
            select(PracticeTranslation.practice_id, PracticeTranslation.key).where(
                PracticeTranslation.practice_id.in_(ids[start : start + CHUNK])
            )
        )
        have.update((row.practice_id, row.key) for row in rows)
    session.add_all(PracticeTranslation(practice_id=p, key=k) for p, k in sorted(wanted - have))


def versions(session: Session, ids: Collection[int], rounds: int = 3) -> dict[int, frozenset[int]]:
    """For each practice of ``ids`` linked to others, its group: every practice linked to it either way (a link
    from it to another's key, or from another to one of its keys), followed ``rounds`` links deep."""
    parent: dict[int, int] = {}

    def root(node: int) -> int:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    seen: set[int] = set()
    frontier = set(ids)
    for _ in range(rounds):
        frontier -= seen
        if not frontier:
            break
        seen |= frontier
        found: set[int] = set()
        ordered = sorted(frontier)
        for start in range(0, len(ordered), CHUNK):
            chunk = ordered[start : start + CHUNK]
            outgoing = select(PracticeTranslation.practice_id, PracticeKey.practice_id).join(
                PracticeKey, PracticeKey.key == PracticeTranslation.key
            )
            edges = [
                *session.execute(outgoing.where(PracticeTranslation.practice_id.in_(chunk))),
                *session.execute(outgoing.where(PracticeKey.practice_id.in_(chunk))),
            ]
            for a, b in edges:
                if a != b:
                    parent[root(a)] = root(b)
                    found.update((a, b))
        frontier = found
    groups: dict[int, set[int]] = {}
    for node in parent:
        groups.setdefault(root(node), set()).add(node)
    return {p: frozenset(groups[root(p)]) for p in ids if p in parent and len(groups[root(p)]) > 1}
