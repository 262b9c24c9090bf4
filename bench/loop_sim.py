"""The simulated world of bench/loop.py: prompts, synthesised completions, the rule and the annotators.

The rule: an answer that contains a digit (a number, a year, a count) is better than one that does not; when both
or neither contain one, the rule has no preference. A simulated annotator follows the rule with probability
`p` and otherwise flips a coin (so on rule ties it always flips a coin). With p = 0.707 one annotator agrees with
the rule on 85.4% of the pairs where it decides, and two annotators agree with each other on 75% of them
((1+p)/2 squared plus (1-p)/2 squared), about what people reach on real preference data.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

DIGIT = re.compile(r"\d")
P_FOLLOW_RULE = 0.707  # pairwise agreement (1+p)²/4 + (1-p)²/4 = 0.75 on pairs the rule decides
DECISIVE_SHARE = 0.9  # share of imported pairs where exactly one completion has a digit

TOPICS = [
    "the moon", "honey bees", "the Eiffel Tower", "coffee", "volcanoes", "the river Nile", "chess", "penguins",
    "the Great Wall of China", "tea", "rainbows", "octopuses", "the Sahara desert", "bicycles", "jazz", "glaciers",
    "the human heart", "sharks", "the Amazon rainforest", "chocolate", "Mount Everest", "the Olympic Games",
    "elephants", "the printing press", "Mars", "whales", "bread", "the Pacific Ocean", "lightning", "tigers",
    "the internet", "salt", "owls", "the piano", "trains", "bamboo", "the sun", "ants", "pyramids of Giza",
    "coral reefs", "the violin", "snow", "dolphins", "the telephone", "cheese", "Saturn", "butterflies", "tulips",
    "the Roman Empire", "kangaroos",
]
# Questions a number answers naturally ("When…", "How many…") beside open ones, so the base policy answers with a
# digit about a third of the time (SmolLM2-135M, 32 new tokens at temperature 0.8, top-p 0.95; 20 samples each:
# 0.20, 0.40, 0.50, 0.15): PPO sees both kinds of answer in every batch. With "Tell me one fact / What is
# interesting / Describe / Say something true" it answered with a digit 5% of the time, too rare a reward to learn
# from in ~100 rollouts.
TEMPLATES = ["Tell me one fact about {t}.", "When did people first learn about {t}?",
             "How many people are interested in {t}?", "How many things do you know about {t}?"]
WITH_DIGIT = [
    "{T} has fascinated people for more than {n} years.",
    "There are about {n} well-known facts about {t}, and this is one of them.",
    "The first detailed book about {t} was written in {y}.",
    "Scientists have counted {n} different kinds of {t} so far.",
    "In {y}, {t} became a popular subject in schools.",
]
WITHOUT_DIGIT = [
    "{T} is something many people find fascinating.",
    "People around the world enjoy learning about {t}, and there is always more to discover.",
    "{T} can be surprising when you look at it closely.",
    "Many writers have described {t} in poems and stories.",
    "{T} plays an important part in the lives of many people.",
]


def rule_score(text) -> int:
    """1 when the answer contains a digit, else 0. `text`: a string or chat messages (export rows)."""
    if isinstance(text, list):
        text = " ".join(str(m.get("content", "")) for m in text if isinstance(m, dict))
    return 1 if DIGIT.search(text or "") else 0


def rule_preference(a: str, b: str) -> int:
    """+1 when the rule prefers a, -1 when it prefers b, 0 when it has no preference."""
    return rule_score(a) - rule_score(b)


def prompts(n: int) -> list[tuple[str, str]]:
    """(external id, prompt text) × n: every topic under every template, then again with a suffix."""
    texts = [t.format(t=topic) for t in TEMPLATES for topic in TOPICS]
    return [(f"loop-{i}", texts[i % len(texts)] + ("" if i < len(texts) else f" (take {i // len(texts) + 1})"))
            for i in range(n)]


def answer(rng: random.Random, topic: str, with_digit: bool) -> str:
    bank = WITH_DIGIT if with_digit else WITHOUT_DIGIT
    text = rng.choice(bank).format(T=topic[0].upper() + topic[1:], t=topic, n=rng.randint(3, 900),
                                   y=rng.randint(1500, 2020))
    return text


def completion_pair(rng: random.Random, topic: str) -> list[str]:
    """Two answers: exactly one with a digit (DECISIVE_SHARE of the time), else both or neither; random order."""
    if rng.random() < DECISIVE_SHARE:
        kinds = [True, False]
    else:
        kinds = [rng.random() < 0.5] * 2
    rng.shuffle(kinds)
    texts = [answer(rng, topic, k) for k in kinds]
    while texts[0] == texts[1]:
        texts[1] = answer(rng, topic, kinds[1])
    return texts


def topic_of(prompt_text: str) -> str:
    for topic in sorted(TOPICS, key=len, reverse=True):
        if topic in prompt_text:
            return topic
    return "this"


def write_import_file(path: Path, n: int, seed: int) -> int:
    """A JSONL import file (DESIGN's row format): n prompts, each with two synthesised completions."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        for external_id, text in prompts(n):
            pair = completion_pair(rng, topic_of(text))
            fh.write(json.dumps({"id": external_id, "prompt": [{"role": "user", "content": text}],
                                 "completions": [{"text": t, "model": "synthesised"} for t in pair]}) + "\n")
    return n


def probe_pairs(n: int, seed: int) -> list[tuple[str, str, str]]:
    """Fresh (prompt, a, b) pairs the reward model never saw, in the same mix as the import."""
    rng = random.Random(seed + 10_000)
    rows = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        rows.append((rng.choice(TEMPLATES).format(t=topic), *completion_pair(rng, topic)))
    return rows


class Annotator:
    """Picks the better of two answers: the rule's choice with probability p, else a coin flip.
    `shuffled`: the control, whose labels carry no information about the answers (always a coin flip)."""

    def __init__(self, rng: random.Random, p: float = P_FOLLOW_RULE, shuffled: bool = False):
        self.rng, self.p, self.shuffled = rng, p, shuffled

    def prefers_first(self, a: str, b: str) -> bool:
        preference = rule_preference(a, b)
        if self.shuffled or preference == 0 or self.rng.random() >= self.p:
            return self.rng.random() < 0.5
        return preference > 0


def observed_agreement(labels_by_task: dict[int, list[int]]) -> tuple[float, int]:
    """Pairwise agreement between annotators on the same task: (share of annotator pairs with the same winner, n)."""
    same = total = 0
    for winners in labels_by_task.values():
        for i in range(len(winners)):
            for j in range(i + 1, len(winners)):
                same += winners[i] == winners[j]
                total += 1
    return (same / total if total else float("nan")), total


def oracle_accuracy(pairs: list[tuple[str, str]]) -> float:
    """How often the rule itself agrees with (chosen, rejected) pairs labelled by annotators; a tie counts half.
    On held-out pairs this is the agreement ceiling: no reward model learning the rule can do better on average."""
    if not pairs:
        return float("nan")
    scores = [1.0 if rule_preference(c, r) > 0 else 0.5 if rule_preference(c, r) == 0 else 0.0 for c, r in pairs]
    return sum(scores) / len(scores)
