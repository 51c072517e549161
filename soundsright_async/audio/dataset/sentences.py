"""Random TTS prompts from the wonderwords word lists, drawn from a caller-supplied RNG.

The templates and the draw order are the reference's (data_miner.md §1.3), so
``Prompter(random.Random(10)).prompt()`` gives the reference's first prompt. Quirks kept for
parity: ``str.capitalize`` lowercases acronyms and the present tense is naive ("acteds").
"""

from __future__ import annotations

import random
from functools import cache
from importlib import resources

from .constants import SENTENCES_PER_PROMPT

__all__ = ["Prompter", "word_lists"]

_VOWELS = frozenset("aeiou")


@cache
def word_lists() -> dict[str, tuple[str, ...]]:
    """Nouns, verbs and adjectives: deduplicated and sorted in code-point order."""
    root = resources.files("wonderwords.assets")
    out: dict[str, tuple[str, ...]] = {}
    for key, name in (
        ("noun", "nounlist.txt"),
        ("verb", "verblist.txt"),
        ("adj", "adjectivelist.txt"),
    ):
        words = root.joinpath(name).read_text(encoding="utf-8").splitlines()
        out[key] = tuple(sorted({w.rstrip() for w in words if w.strip()}))
    return out


def _present_tense(verb: str) -> str:
    v = verb.strip().lower()
    if v.endswith(("ss", "ch", "x", "tch", "sh", "zz")):
        return v + "es"
    if v.endswith("y") and len(v) > 1 and v[-2] not in _VOWELS:
        return v[:-1] + "ies"
    return v + "s"


class Prompter:
    """Draws prompts of ``sentences`` sentences (each followed by one space) from ``rng``."""

    def __init__(self, rng: random.Random, sentences: int = SENTENCES_PER_PROMPT) -> None:
        if sentences < 1:
            raise ValueError("sentences must be >= 1")
        self.rng = rng
        self.sentences = sentences
        self._words = word_lists()

    def _word(self, kind: str) -> str:
        return self.rng.choice(self._words[kind])

    def _with_article(self, word: str) -> str:
        article = self.rng.choices(["the", "a", ""], weights=[5, 3, 2])[0]
        if article == "a" and word[:1] in _VOWELS:
            article = "an"
        return f"{article} {word}" if article else word

    def bare_bone_sentence(self) -> str:
        noun = self._word("noun")
        subject = self._with_article(noun)
        verb = self._word("verb")
        return f"{subject.capitalize()} {_present_tense(verb)}."

    def simple_sentence(self) -> str:
        obj = self._word("noun")
        return f"{self.bare_bone_sentence()[:-1]} {obj}."

    def bare_bone_with_adjective(self) -> str:
        noun = self._word("noun")
        verb = self._word("verb")
        adj = self._with_article(self._word("adj"))
        return f"{adj.capitalize()} {noun} {_present_tense(verb)}."

    def sentence(self) -> str:
        head = self.bare_bone_with_adjective()
        obj = self._word("noun")
        return f"{head[:-1]} {obj}."

    def prompt(self) -> str:
        parts = []
        for _ in range(self.sentences):
            kind = self.rng.randint(0, 3)
            if kind == 0:
                parts.append(self.simple_sentence())
            elif kind == 1:
                parts.append(self.bare_bone_with_adjective())
            else:
                parts.append(self.sentence())
        return "".join(p + " " for p in parts)
