"""A synthetic, learnable preference set for the pipeline tests."""

import random

import pytest

# The model fixtures (default_models, smollm2_dir, minilm_dir, tokenizers, tiny_llama_dir, tiny_bert_dir)
# live in tests/training/conftest.py, shared with the Django-side training tests.


# --- a synthetic preference set that a reward model can learn ------------------------------------------------

CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin",
    "Egypt": "Cairo", "Kenya": "Nairobi", "Peru": "Lima", "Chile": "Santiago", "Norway": "Oslo",
    "Sweden": "Stockholm", "Finland": "Helsinki", "Poland": "Warsaw", "Greece": "Athens", "Turkey": "Ankara",
    "Russia": "Moscow", "China": "Beijing", "India": "New Delhi", "Canada": "Ottawa", "Mexico": "Mexico City",
    "Cuba": "Havana", "Ireland": "Dublin", "Portugal": "Lisbon", "Austria": "Vienna", "Hungary": "Budapest",
    "Thailand": "Bangkok", "Vietnam": "Hanoi", "Iran": "Tehran", "Iraq": "Baghdad", "Ghana": "Accra",
    "Nigeria": "Abuja", "Argentina": "Buenos Aires", "Colombia": "Bogota", "Denmark": "Copenhagen",
    "Belgium": "Brussels", "Czechia": "Prague", "Romania": "Bucharest", "Morocco": "Rabat",
}
QUESTIONS = ["What is the capital of {c}?", "Which city is the capital of {c}?", "Name the capital city of {c}."]
ANSWERS = ["The capital of {c} is {a}.", "{a} is the capital of {c}.", "It is {a}, the capital of {c}."]
HEDGES = ["Hmm, I am not sure.", "Sorry.", "Good question.", "Well,", "I would rather not say."]
DEFLECTIONS = [
    "Let us talk about something else.", "You could look it up yourself.", "Why do you want to know?",
    "I cannot help with that.", "Geography is boring.",
]


def make_preference_rows(n_prompts: int = 38, *, seed: int = 0, chat_share: float = 0.5) -> list[dict]:
    """Rows in the export format: the chosen completion answers the question, the rejected one evades it.

    Evasions are hedge + deflection combinations, and half the prompts are chat messages, so the model must
    learn "answers the question" rather than memorise strings.
    """
    rng = random.Random(seed)
    rows = []
    for index, (country, capital) in enumerate(list(CAPITALS.items())[:n_prompts]):
        question = rng.choice(QUESTIONS).format(c=country)
        prompt = [{"role": "user", "content": question}] if rng.random() < chat_share else question
        for pair in range(2):
            agreement = rng.choice([0.67, 0.75, 1.0])
            rows.append({
                "prompt": prompt,
                "chosen": rng.choice(ANSWERS).format(c=country, a=capital),
                "rejected": f"{rng.choice(HEDGES)} {rng.choice(DEFLECTIONS)}",
                "margin": round(2 * agreement - 1, 2),
                "agreement": agreement,
                "n_judgements": 3,
                "prompt_id": f"q-{index}",
                "chosen_model": "policy-v1",
                "rejected_model": "policy-v0",
                "snapshot": "snap-test",
            })
    return rows


@pytest.fixture(scope="session")
def preference_rows() -> list[dict]:
    return make_preference_rows()
