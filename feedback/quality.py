"""Statistics of preference data (pure numpy; no Django). Placeholder until the full module lands."""

from __future__ import annotations

from itertools import combinations


def pairs_from_ranking(ranking):
    """A ranking with ties (groups of completion ids, best first) → its K·(K−1)/2 pairs (a, b, outcome).

    a < b by id; outcome +1 when a is preferred, −1 when b is, 0 for a tie.
    """
    position = {}
    for rank, group in enumerate(ranking):
        if not group:
            raise ValueError("empty group in ranking")
        for item in group:
            if item in position:
                raise ValueError(f"{item!r} appears twice in the ranking")
            position[item] = rank
    pairs = []
    for a, b in combinations(sorted(position), 2):
        pairs.append((a, b, (position[a] < position[b]) - (position[a] > position[b])))
    return pairs
