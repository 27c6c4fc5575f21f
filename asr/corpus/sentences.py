"""Seeded English sentence generator over a broad, frequency-weighted vocabulary.

Words come from ``wordfreq`` (its English list, most frequent first), kept only when they
are already normalised text made of letters and an inner apostrophe (``"don't"``), so every
sentence is its own normalisation. Sentences mix two kinds, so a recogniser must spell
what it hears rather than learn a grammar:

* *shaped* sentences: function-word scaffolds (clauses, questions, ``there is …``, lists,
  commands, subordinate clauses) whose open slots take vocabulary words;
* *free* word sequences drawn straight from the vocabulary.

Words are drawn by real frequency raised to ``frequency_exponent`` (< 1 flattens Zipf's law
so that rare words are heard often enough to be learnt).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator

import numpy as np

from asr.text import normalise_text

__all__ = ["SentenceGenerator", "english_vocabulary", "speakable_word"]

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_VOWEL = re.compile(r"[aeiouy]")

_DETERMINERS = (
    "the the the a a this that every some no my your his her our their each another".split()
)
_PREPOSITIONS = (
    "of in on at by for with from to into over under after before about through between "
    "without near behind across against during like"
).split()
_CONJUNCTIONS = "and but or so because while although when if until since unless".split()
_PRONOUNS = "i you he she we they it someone nobody everyone".split()
_AUXILIARIES = "will can could should would might must may did does".split()
_COPULAS = "is was seems became remains looks".split()
_QUESTION_WORDS = "what where why how who when which".split()
_OPENERS = ("i think that", "they said that", "it is clear that", "we know that", "maybe")


def speakable_word(word: str) -> bool:
    """Whether a synthesiser reads ``word`` as the word written: letters with at most one
    inner apostrophe, a vowel (which drops abbreviations espeak would spell out), and no
    lone letter other than ``a``/``i``."""
    return bool(_WORD.fullmatch(word) and _VOWEL.search(word) and (len(word) > 1 or word in ("a", "i")))


@functools.lru_cache(maxsize=4)
def english_vocabulary(size: int) -> tuple[tuple[str, ...], np.ndarray]:
    """The ``size`` most frequent usable English words and their frequencies.

    A word is usable when it is already normalised text (``normalise_text(w) == w``),
    consists of letters with at most one inner apostrophe, has a vowel (which drops
    abbreviations espeak would spell out), and is not a lone letter other than ``a``/``i``.

    Args:
        size: number of words wanted.

    Returns:
        ``(words, frequencies)``: words most frequent first, float64 frequencies of shape
        ``(size,)`` as ``wordfreq.word_frequency`` gives them.

    Raises:
        ImportError: if ``wordfreq`` is not installed.
        ValueError: if wordfreq's English list has fewer than ``size`` usable words.
    """
    try:
        import wordfreq
    except ImportError as e:
        raise ImportError(
            "the corpus vocabulary needs the optional 'wordfreq' package; install it with "
            "`pip install 'shrinkml[corpus]'`"
        ) from e
    candidates = wordfreq.top_n_list("en", max(3 * size, 1000))
    words: list[str] = []
    for word in candidates:
        if speakable_word(word) and normalise_text(word) == word:
            words.append(word)
            if len(words) == size:
                break
    if len(words) < size:
        raise ValueError(
            f"wordfreq's English list has only {len(words)} usable words; vocabulary size "
            f"{size} asked for more; use a smaller vocabulary_size"
        )
    frequencies = np.array([wordfreq.word_frequency(w, "en") for w in words], dtype=np.float64)
    return tuple(words), frequencies


class SentenceGenerator:
    """Draws distinct normalised sentences of ``min_words``–``max_words`` words.

    The same arguments give the same sentences in the same order.

    Args:
        seed: seed of the generator's random stream.
        vocabulary_size: number of most frequent usable words to draw from.
        min_words: fewest words in a sentence (at least 1).
        max_words: most words in a sentence.
        free_sequence_fraction: share of sentences that are free word sequences.
        frequency_exponent: words are drawn with probability ∝ frequency ** exponent.
    """

    def __init__(
        self,
        *,
        seed: int,
        vocabulary_size: int,
        min_words: int = 3,
        max_words: int = 20,
        free_sequence_fraction: float = 0.4,
        frequency_exponent: float = 0.5,
    ) -> None:
        if not 1 <= min_words <= max_words:
            raise ValueError(
                f"need 1 <= min_words <= max_words; got min_words={min_words}, max_words={max_words}"
            )
        if not 0.0 <= free_sequence_fraction <= 1.0:
            raise ValueError(
                f"free_sequence_fraction must be in [0, 1]; got {free_sequence_fraction}"
            )
        words, frequencies = english_vocabulary(vocabulary_size)
        self.vocabulary = words
        weights = frequencies**frequency_exponent
        self._cdf = np.cumsum(weights / weights.sum())
        self._rng = np.random.default_rng(seed)
        self.min_words = min_words
        self.max_words = max_words
        self.free_sequence_fraction = free_sequence_fraction
        self._shapes: tuple[Callable[[], list[str]], ...] = (
            self._statement,
            self._statement,
            self._compound,
            self._question,
            self._there_is,
            self._description,
            self._command,
            self._listing,
            self._opinion,
        )

    # Word sources --------------------------------------------------------------------
    def _words(self, n: int) -> list[str]:
        picks = np.searchsorted(self._cdf, self._rng.random(n), side="right")
        return [self.vocabulary[min(i, len(self.vocabulary) - 1)] for i in picks]

    def _pick(self, options: list[str] | tuple[str, ...]) -> str:
        return options[int(self._rng.integers(len(options)))]

    # Phrases -------------------------------------------------------------------------
    def _noun_phrase(self) -> list[str]:
        modifiers = int(self._rng.choice(3, p=(0.55, 0.35, 0.10)))
        return [self._pick(_DETERMINERS), *self._words(modifiers + 1)]

    def _verb_phrase(self) -> list[str]:
        head = self._words(1)
        if self._rng.random() < 0.35:
            head = [self._pick(_AUXILIARIES), *head]
        tail = self._noun_phrase() if self._rng.random() < 0.7 else []
        if self._rng.random() < 0.4:
            tail += [self._pick(_PREPOSITIONS), *self._noun_phrase()]
        return head + tail

    def _subject(self) -> list[str]:
        return [self._pick(_PRONOUNS)] if self._rng.random() < 0.4 else self._noun_phrase()

    # Sentence shapes -----------------------------------------------------------------
    def _statement(self) -> list[str]:
        return self._subject() + self._verb_phrase()

    def _compound(self) -> list[str]:
        return self._statement() + [self._pick(_CONJUNCTIONS)] + self._statement()

    def _question(self) -> list[str]:
        return (
            [self._pick(_QUESTION_WORDS), self._pick(_AUXILIARIES)]
            + self._subject()
            + self._words(1)
        )

    def _there_is(self) -> list[str]:
        return (
            ["there", self._pick(_COPULAS)]
            + self._noun_phrase()
            + [
                self._pick(_PREPOSITIONS),
                *self._noun_phrase(),
            ]
        )

    def _description(self) -> list[str]:
        return self._noun_phrase() + [self._pick(_COPULAS), *self._words(1)]

    def _command(self) -> list[str]:
        lead = ["please"] if self._rng.random() < 0.3 else []
        return lead + self._words(1) + self._noun_phrase()

    def _listing(self) -> list[str]:
        items = self._words(int(self._rng.integers(2, 5)))
        return items[:-1] + ["and", items[-1]]

    def _opinion(self) -> list[str]:
        return self._pick(_OPENERS).split() + self._statement()

    # Sentences -----------------------------------------------------------------------
    def sentence(self) -> str:
        """One sentence (possibly a repeat of an earlier one)."""
        length = int(self._rng.integers(self.min_words, self.max_words + 1))
        if self._rng.random() < self.free_sequence_fraction:
            return " ".join(self._words(length))
        words: list[str] = []
        while len(words) < length:
            if words:
                words.append(self._pick(_CONJUNCTIONS))
            words += self._shapes[int(self._rng.integers(len(self._shapes)))]()
        return " ".join(words[:length])

    def distinct_sentences(self) -> Iterator[str]:
        """Endless stream of sentences, each different from all before it."""
        seen: set[str] = set()
        while True:
            sentence = self.sentence()
            if sentence not in seen:
                seen.add(sentence)
                yield sentence
