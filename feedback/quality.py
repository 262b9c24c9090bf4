"""Statistics of preference data, pure numpy: no Django, plain lists and arrays in, numbers out.

- `pairs_from_ranking`: a ranking with ties → its K·(K−1)/2 pairs.
- `krippendorff_alpha`: Krippendorff's alpha (nominal, ordinal, interval) from a coders × units matrix;
  `reliability_from_tasks` builds that matrix with one unit per (task, pair) and the pair's outcome
  (−1, 0, +1) as an ordinal value — ties sit between the two preferences, which is what ordinal means.
- `bradley_terry` / `leaderboard`: model strengths from pairwise battles (ties count half a win each
  way), Elo-scaled, with bootstrap confidence intervals computed on aggregated counts, so a million
  judgements cost no more than their few hundred distinct (model a, model b, outcome) cells.
- `consensus_pairs` / `consensus_ranking`: the trust-weighted consensus of a task's judges (exports,
  dashboard and trust all use these, so the platform has one notion of "the judges' answer").
- `gold_counts` / `agreement_counts`: the evidence behind an annotator's trust; `trust_score` turns it into one.
- `split_of`: the stable train/test split by prompt.
- `wilson_interval`, `needs_more_judgements`.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations
from typing import Hashable, Iterable, Sequence

import numpy as np


def pairs_from_ranking(ranking: Sequence[Sequence[Hashable]]) -> list[tuple[Hashable, Hashable, int]]:
    """A ranking with ties (groups best first, e.g. [[11], [12, 13]]) → [(a, b, outcome)] for every pair.

    a < b; outcome +1 when a is preferred, −1 when b is, 0 for a tie.
    """
    position = {}
    for rank, group in enumerate(ranking):
        if not group:
            raise ValueError("empty group in ranking")
        for item in group:
            if item in position:
                raise ValueError(f"{item!r} appears twice in the ranking")
            position[item] = rank
    return [(a, b, (position[a] < position[b]) - (position[a] > position[b])) for a, b in combinations(sorted(position), 2)]


# --- Krippendorff's alpha ---------------------------------------------------------------------------------------


def krippendorff_alpha(reliability: np.ndarray, level: str = "ordinal") -> float:
    """Krippendorff's alpha of a coders × units matrix (NaN = no value). NaN when undefined.

    Built from the coincidence matrix o[c, k] = Σ_u n_uc·(n_uk − [c = k]) / (m_u − 1) over units with at
    least two values; alpha = 1 − (n − 1)·Σ o·δ² / Σ n_c·n_k·δ², with δ² the level's distance.
    """
    data = np.asarray(reliability, dtype=float)
    values = np.unique(data[~np.isnan(data)])
    if values.size == 0:
        return float("nan")
    # counts[u, v]: how many coders gave unit u the value v
    index = np.searchsorted(values, np.where(np.isnan(data), values[0], data))
    counts = np.zeros((data.shape[1], values.size))
    coder_idx, unit_idx = np.nonzero(~np.isnan(data))
    np.add.at(counts, (unit_idx, index[coder_idx, unit_idx]), 1)
    pairable = counts.sum(axis=1)
    counts, pairable = counts[pairable >= 2], pairable[pairable >= 2]
    if counts.shape[0] == 0:
        return float("nan")
    coincidence = (counts[:, :, None] * counts[:, None, :]) / (pairable - 1)[:, None, None]
    coincidence = coincidence.sum(axis=0) - np.diag((counts / (pairable - 1)[:, None]).sum(axis=0))
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    delta = _distance(values, n_c, level)
    expected = (np.outer(n_c, n_c) * delta).sum()
    if expected == 0:
        return float("nan")  # one value only: agreement cannot be told from chance
    return float(1.0 - (n - 1) * (coincidence * delta).sum() / expected)


def _distance(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    if level == "nominal":
        return 1.0 - np.eye(values.size)
    if level == "interval":
        return (values[:, None] - values[None, :]) ** 2
    if level == "ordinal":
        cumulative = np.cumsum(n_c)
        # Σ_{g=c..k} n_g − (n_c + n_k)/2 for c ≤ k, symmetric
        lo = np.minimum.outer(np.arange(values.size), np.arange(values.size))
        hi = np.maximum.outer(np.arange(values.size), np.arange(values.size))
        between = cumulative[hi] - np.where(lo > 0, cumulative[lo - 1], 0.0)
        return (between - (n_c[:, None] + n_c[None, :]) / 2.0) ** 2
    raise ValueError(f"unknown level of measurement {level!r}")


def reliability_from_tasks(tasks: dict[Hashable, list[tuple[Hashable, Sequence[Sequence[Hashable]]]]]) -> np.ndarray:
    """{task: [(annotator, ranking), …]} → coders × units matrix; a unit is a (task, pair), its value the outcome."""
    coders: dict[Hashable, int] = {}
    units: dict[tuple, int] = {}
    cells: list[tuple[int, int, int]] = []
    for task, votes in tasks.items():
        for annotator, ranking in votes:
            coder = coders.setdefault(annotator, len(coders))
            for a, b, outcome in pairs_from_ranking(ranking):
                unit = units.setdefault((task, a, b), len(units))
                cells.append((coder, unit, outcome))
    matrix = np.full((len(coders), len(units)), np.nan)
    if cells:
        coder_idx, unit_idx, outcome = np.array(cells).T
        matrix[coder_idx, unit_idx] = outcome
    return matrix


def krippendorff_alpha_from_tasks(tasks: dict) -> float | None:
    """Ordinal alpha over pairwise preferences; None when no pair was judged twice or only one value occurs."""
    value = krippendorff_alpha(reliability_from_tasks(tasks), level="ordinal")
    return None if np.isnan(value) else value


# --- Bradley–Terry ----------------------------------------------------------------------------------------------

ELO_SCALE = 400.0
ELO_ANCHOR = 1000.0


def aggregate_battles(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, n_models: int) -> np.ndarray:
    """wins[i, j] = times i beat j, a tie adding half to each side (vectorised with bincount)."""
    a, b, outcome = np.asarray(a), np.asarray(b), np.asarray(outcome)
    score_a = np.where(outcome > 0, 1.0, np.where(outcome < 0, 0.0, 0.5))
    flat = n_models * n_models
    wins = np.bincount(a * n_models + b, weights=score_a, minlength=flat)
    wins += np.bincount(b * n_models + a, weights=1.0 - score_a, minlength=flat)
    return wins.reshape(n_models, n_models)


def bradley_terry(wins: np.ndarray, *, iterations: int = 1000, tol: float = 1e-10, prior: float = 0.01) -> np.ndarray:
    """Log-strengths θ (mean 0) maximising Π σ(θ_i − θ_j)^wins[i, j], by Hunter's MM updates.

    `wins` may be stacked (rounds × M × M) to fit many bootstrap rounds at once. A small `prior` (virtual
    half-wins against every other model) keeps strengths finite for a model that never lost or never won.
    """
    wins = np.asarray(wins, dtype=float)
    stacked = wins.ndim == 3
    wins = wins if stacked else wins[None]
    m = wins.shape[-1]
    wins = wins + prior * (1.0 - np.eye(m))
    games = wins + np.swapaxes(wins, -1, -2)
    total_wins = wins.sum(axis=-1)
    strength = np.ones(wins.shape[:-1])
    for _ in range(iterations):
        denom = (games / (strength[..., :, None] + strength[..., None, :])).sum(axis=-1)
        updated = total_wins / denom
        updated /= np.exp(np.log(updated).mean(axis=-1, keepdims=True))
        done = np.max(np.abs(updated - strength)) < tol
        strength = updated
        if done:
            break
    theta = np.log(strength)
    theta -= theta.mean(axis=-1, keepdims=True)
    return theta if stacked else theta[0]


def to_elo(theta: np.ndarray) -> np.ndarray:
    return ELO_ANCHOR + ELO_SCALE * np.asarray(theta) / np.log(10.0)


def leaderboard(
    a: np.ndarray, b: np.ndarray, outcome: np.ndarray, names: Sequence[str], *, rounds: int = 100, seed: int = 0,
    confidence: float = 0.95,
) -> list[dict]:
    """Elo-scaled Bradley–Terry scores with bootstrap intervals, best first (Chatbot Arena style).

    Bootstrap rounds resample the battles with multinomial counts over their distinct (a, b, outcome)
    cells — the same distribution as resampling a million rows, at the cost of a few hundred cells.
    """
    m = len(names)
    a, b, outcome = np.asarray(a), np.asarray(b), np.sign(np.asarray(outcome)).astype(int)
    cell = (a * m + b) * 3 + (outcome + 1)
    cells, cell_counts = np.unique(cell, return_counts=True)
    cell_a, cell_b, cell_outcome = (cells // 3) // m, (cells // 3) % m, cells % 3 - 1
    point = bradley_terry(aggregate_battles(np.repeat(cell_a, cell_counts), np.repeat(cell_b, cell_counts),
                                            np.repeat(cell_outcome, cell_counts), m))
    rng = np.random.default_rng(seed)
    resampled = rng.multinomial(cell_counts.sum(), cell_counts / cell_counts.sum(), size=rounds)  # rounds × cells
    score_a = np.where(cell_outcome > 0, 1.0, np.where(cell_outcome < 0, 0.0, 0.5))
    wins = np.zeros((rounds, m * m))
    np.add.at(wins, (slice(None), cell_a * m + cell_b), resampled * score_a)
    np.add.at(wins, (slice(None), cell_b * m + cell_a), resampled * (1.0 - score_a))
    boot = bradley_terry(wins.reshape(rounds, m, m))
    tail = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(to_elo(boot), [tail, 1.0 - tail], axis=0)
    scores = to_elo(point)
    comparisons = np.bincount(a, minlength=m) + np.bincount(b, minlength=m)
    order = np.argsort(-scores)
    return [
        {"rank": rank + 1, "model": names[i], "score": float(scores[i]), "lower": float(lower[i]),
         "upper": float(upper[i]), "comparisons": int(comparisons[i])}
        for rank, i in enumerate(order)
    ]


def leaderboard_from_battles(battles: Iterable[tuple[str, str, int]], **kwargs) -> list[dict]:
    """[(model a, model b, outcome)] with names → `leaderboard`."""
    names: dict[str, int] = {}
    rows = [(names.setdefault(x, len(names)), names.setdefault(y, len(names)), o) for x, y, o in battles]
    if len(names) < 2:
        return []
    a, b, outcome = (np.array(col) for col in zip(*rows))
    return leaderboard(a, b, outcome, list(names), **kwargs)


# --- intervals, trust, adaptive overlap --------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (well-behaved near 0 and 1 and for small n)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(centre - half), float(centre + half))


def trust_score(*, gold_correct: int, gold_total: int, agree: int, agree_total: int,
                gold_weight: float = 2.0, prior_correct: float = 4.0, prior_total: float = 5.0) -> float:
    """Trust in [0, 1]: a Beta-smoothed accuracy over gold pairs (weighted ×2) and pairs agreeing with consensus.

    The prior (4 right out of 5) keeps a newcomer near 0.8 until evidence arrives, so one early mistake
    neither excludes them nor does one lucky answer make them an authority.
    """
    right = gold_weight * gold_correct + agree + prior_correct
    total = gold_weight * gold_total + agree_total + prior_total
    return float(right / total)


def needs_more_judgements(rankings: Sequence[Sequence[Sequence[Hashable]]], *, min_judgements: int,
                          max_judgements: int, agreement_threshold: float = 0.75) -> bool:
    """Adaptive overlap: stop at the minimum when the judges agree, else ask again up to the maximum.

    Agreement: over the task's pairs, the mean share of judges voting with the majority direction.
    """
    n = len(rankings)
    if n < min_judgements:
        return True
    if n >= max_judgements:
        return False
    votes: dict[tuple, list[int]] = {}
    for ranking in rankings:
        for a, b, outcome in pairs_from_ranking(ranking):
            votes.setdefault((a, b), []).append(outcome)
    shares = []
    for outcomes in votes.values():
        counts = np.bincount(np.asarray(outcomes) + 1, minlength=3)
        shares.append(counts.max() / counts.sum())
    return bool(shares) and float(np.mean(shares)) < agreement_threshold


# --- consensus of a task's judges --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairConsensus:
    chosen: Hashable | None  # None: the judges tie overall (no consensus direction)
    rejected: Hashable | None
    margin: float  # |weighted wins - weighted losses| / total weight, in [0, 1]
    agreement: float  # share of the judges whose vote matches the consensus, in [0, 1]
    n_judgements: int


def consensus_pairs(votes: Sequence[tuple[Sequence[Sequence[Hashable]], float]], *,
                    adjudicated_ranking=None) -> list[PairConsensus]:
    """Trust-weighted consensus of every pair of a task from its rankings [(ranking, trust), …].

    A reviewer's adjudicated ranking, when there is one, decides the direction; the annotators'
    agreement with it is still reported.
    """
    per_pair: dict[tuple, list[tuple[int, float]]] = {}
    for ranking, weight in votes:
        for a, b, outcome in pairs_from_ranking(ranking):
            per_pair.setdefault((a, b), []).append((outcome, weight))
    decided = {(a, b): outcome for a, b, outcome in pairs_from_ranking(adjudicated_ranking or [])}
    result = []
    for (a, b), pair_votes in sorted(per_pair.items()):
        weight_a = sum(w for o, w in pair_votes if o > 0)
        weight_b = sum(w for o, w in pair_votes if o < 0)
        total = sum(w for _, w in pair_votes)
        direction = decided.get((a, b), (weight_a > weight_b) - (weight_a < weight_b))
        agreement = sum(1 for o, _ in pair_votes if o == direction) / len(pair_votes)
        margin = abs(weight_a - weight_b) / total if total else 0.0
        chosen, rejected = (None, None) if direction == 0 else ((a, b) if direction > 0 else (b, a))
        result.append(PairConsensus(chosen, rejected, margin, agreement, len(pair_votes)))
    return result


def consensus_ranking(rankings: Sequence[Sequence[Sequence[Hashable]]]) -> list[list]:
    """A full ranking from several: completions ordered by their mean position (Borda); equal means tie."""
    positions: dict[Hashable, list[int]] = {}
    for ranking in rankings:
        for rank, group in enumerate(ranking):
            for cid in group:
                positions.setdefault(cid, []).append(rank)
    by_mean: dict[float, list] = {}
    for cid, ranks in positions.items():
        by_mean.setdefault(round(sum(ranks) / len(ranks), 6), []).append(cid)
    return [sorted(by_mean[m]) for m in sorted(by_mean)]


# --- evidence for trust ------------------------------------------------------------------------------------------


def gold_pair_counts(ranking, gold_ranking) -> tuple[int, int]:
    """(pairs matching the known answer, pairs the known answer decides) of one judgement of a gold task."""
    truth = {(a, b): o for a, b, o in pairs_from_ranking(gold_ranking or [])}
    hits = total = 0
    for a, b, outcome in pairs_from_ranking(ranking):
        if truth.get((a, b), 0) != 0:
            hits += outcome == truth[(a, b)]
            total += 1
    return hits, total


def gold_counts(judgements: Iterable[tuple[Hashable, Hashable, Sequence]], gold: dict) -> dict[Hashable, tuple[int, int]]:
    """Per annotator, from [(annotator, task, ranking)] and {gold task: known ranking}: gold pairs right, decided."""
    counts: dict[Hashable, list[int]] = defaultdict(lambda: [0, 0])
    for annotator, task, ranking in judgements:
        if gold.get(task):
            hits, total = gold_pair_counts(ranking, gold[task])
            counts[annotator][0] += hits
            counts[annotator][1] += total
    return {a: (h, n) for a, (h, n) in counts.items()}


def agreement_counts(votes_by_task: dict[Hashable, Sequence[tuple[Hashable, Sequence]]],
                     trust: dict) -> dict[Hashable, tuple[int, int]]:
    """Per annotator, from {task: [(annotator, ranking), …]}: decided pairs agreeing with the consensus of the
    others (own vote left out), and all such pairs compared."""
    counts: dict[Hashable, list[int]] = defaultdict(lambda: [0, 0])
    for votes in votes_by_task.values():
        if len(votes) < 2:
            continue
        for i, (annotator, ranking) in enumerate(votes):
            others = [(r, trust.get(a, 1.0)) for j, (a, r) in enumerate(votes) if j != i]
            consensus = {(p.chosen, p.rejected) for p in consensus_pairs(others) if p.chosen is not None}
            for a, b, outcome in pairs_from_ranking(ranking):
                if outcome == 0 or not ({(a, b), (b, a)} & consensus):
                    continue
                counts[annotator][0] += ((a, b) if outcome > 0 else (b, a)) in consensus
                counts[annotator][1] += 1
    return {a: (h, n) for a, (h, n) in counts.items()}


# --- the train/test split ----------------------------------------------------------------------------------------


def split_of(prompt_key: str, *, test_fraction: float, seed: int = 0) -> str:
    """'test' for a stable share of prompts, decided by a hash of the prompt, else 'train'."""
    if test_fraction <= 0:
        return "train"
    digest = hashlib.sha256(f"{seed}:{prompt_key}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"
