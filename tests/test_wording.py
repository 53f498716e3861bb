"""Reading a task's words: questions against requests put as questions, and courtesy.

Tables of hand-made sentences, one row per case; each loosened reading has rows that must
still read as a question (or keep their condition, their second action).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skillbank.search import tokenize
from skillbank.wording import (
    CONDITION,
    FUNCTION_WORDS,
    NEGATION,
    courtesy_masked,
    is_question,
    proper_names,
    read_words,
)

QUESTIONS = [
    # requests put to the listener as a question: not questions about state
    ("Could you move report.txt to archives?", False),
    ("Would you please restock 20 units of 'mug'?", False),
    ("Can you kindly cancel the newest pending order of zed@example.com?", False),
    ("Hey, would you mind restocking 20 units of 'mug'?", False),
    ("Would you be able to book the flight?", False),
    ("Would you be so kind as to start the car?", False),
    ("zed@example.com has a new email address: z@mail.test", False),  # a value opens it
    ("Restock 20 units of 'mug'.", False),
    # questions about state, or asking to be told: still questions
    ("Is report.txt in archives?", True),
    ("Can we return the first item of order O-5003 and refund it?", True),
    ("Could we move report.txt to archives?", True),
    ("Could you confirm report.txt was moved?", True),
    ("Could you check whether the order was cancelled?", True),
    ("Can you tell me if 20 units of 'mug' were restocked?", True),
    ("Would you like to cancel the order?", True),
    ("Did zed@example.com cancel the newest pending order?", True),
    ("Has 'mug' been restocked with 20 units?", True),
    ("What orders has zed@example.com placed", True),
    # any sentence counts, not only the first or the last
    ("Restock 20 units of 'mug'. Is it sold out? Thanks.", True),
    ("Is it sold out? Restock 20 units of 'mug'.", True),
    ("Could you restock 20 units of 'mug'? Did it work?", True),
]


@pytest.mark.parametrize(("text", "question"), QUESTIONS, ids=[t[:40] for t, _ in QUESTIONS])
def test_a_request_put_as_a_question_is_no_question_about_state(text: str, question: bool) -> None:
    assert is_question(text) == question


COURTESY = [
    ("Just go ahead and grab 'ZETA'.", "and", False),
    ("I'd appreciate it if you could start the car.", "if", False),
    ("We would be grateful if you would restock 'mug'.", "if", False),
    ("Would you be so kind as to start the car?", "kind", False),
    # the same words doing their own work are kept
    ("Restock 'mug' and then order 'lamp'.", "and", True),
    ("Go ahead and restock 'mug' and order 'lamp'.", "and", True),
    ("Start the car if you could find the keys.", "if", True),
    ("I'd appreciate it if you could start the car if it is warm.", "if", True),
]


@pytest.mark.parametrize(("text", "word", "kept"), COURTESY, ids=[t[:40] for t, _, _ in COURTESY])
def test_courtesy_is_blanked_and_nothing_else(text: str, word: str, kept: bool) -> None:
    masked = courtesy_masked(text)
    assert len(masked) == len(text)  # positions stay
    assert (word in read_words(masked)) == kept


@given(st.text(max_size=80))
def test_courtesy_masking_keeps_positions_and_only_blanks(text: str) -> None:
    masked = courtesy_masked(text)
    assert len(masked) == len(text)
    assert all(m == c or m == " " for m, c in zip(masked, text, strict=True))


def test_function_words_hold_no_word_that_changes_a_request() -> None:
    # The pieces of "don't" are function words; "don't" itself, read whole, is a negation.
    assert {"don", "t"} <= FUNCTION_WORDS and "don't" in NEGATION
    assert not FUNCTION_WORDS & (NEGATION | CONDITION)
    assert tokenize("I'm sure") == ["m", "sure"]  # what the tokenizer leaves of a contraction


def test_once_makes_a_request_conditional() -> None:
    assert "once" in CONDITION


NAMES = [
    ("Let's get Zeta Corp on my watchlist, alright?", ["Zeta", "Corp"]),
    ("Set the navigation to Crescent Hollow. Then start the car", ["Crescent", "Hollow"]),
    ("Start the car in START mode", ["START"]),
    # a sentence's first word, "I", and words after a colon, quote, bracket or dash are not
    ("I'm done. Please restock it: Now", []),
    ("Restock it (Urgent) \u2014 Thanks", []),
    ("I'd like that. I am here", []),
]


@pytest.mark.parametrize(("text", "names"), NAMES, ids=[t[:30] for t, _ in NAMES])
def test_capitalised_words_inside_a_sentence_are_names(text: str, names: list[str]) -> None:
    assert proper_names(text) == names
