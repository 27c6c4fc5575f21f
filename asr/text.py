"""Text normalisation and the character tokenizer.

Normalisation policy (applied to every transcript before training, scoring or tokenising):

* Unicode is folded to NFKC and lower-cased; curly apostrophes become ``'``.
* Numbers are spelled out in words: ``"42"`` → ``"forty two"``, ``"3.5"`` → ``"three point
  five"``, ``"1,200"`` → ``"one thousand two hundred"``. Ordinal suffixes are kept as words
  (``"21st"`` → ``"twenty first"``). Years are read as plain numbers (``"1999"`` → ``"one
  thousand nine hundred ninety nine"``): simple and unambiguous, if not how people say them.
* Apostrophes inside words are kept (``"don't"``); other punctuation becomes a word break.
* Letters outside ``a``–``z`` after NFKD accent stripping are dropped; runs of white space
  collapse to one space.

A transcript that normalises to the empty string is *unnormalisable*: manifests report it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "BLANK",
    "SOS",
    "EOS",
    "CharTokenizer",
    "normalise_text",
    "number_to_words",
]

BLANK = "<blank>"
SOS = "<sos>"
EOS = "<eos>"

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}

_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?(?:st|nd|rd|th)?")
_KEEP = re.compile(r"[^a-z' ]+")
_SPACES = re.compile(r"\s+")


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_to_words(n: int) -> str:
    """Spell a non-negative integer in English words (``105`` → ``"one hundred five"``).

    Raises:
        ValueError: if ``n`` is negative or not below 10**15.
    """
    if not 0 <= n < 10**15:
        raise ValueError(f"number_to_words accepts integers in [0, 10**15); got {n}")
    if n < 1000:
        return " ".join(_below_thousand(n))
    words: list[str] = []
    for scale, name in _SCALES:
        if n >= scale:
            words += _below_thousand(n // scale) + [name]
            n %= scale
    if n:
        words += _below_thousand(n)
    return " ".join(words)


def _ordinal(words: str) -> str:
    head, _, last = words.rpartition(" ")
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}".strip()


def _spell_number(match: re.Match[str]) -> str:
    token = match.group(0)
    suffix = token[-2:] if token[-2:] in ("st", "nd", "rd", "th") else ""
    token = token[: len(token) - len(suffix)].replace(",", "")
    whole, _, fraction = token.partition(".")
    if len(whole) > 15:
        # Too long to be a quantity anyone says; read it digit by digit.
        spoken = " ".join(_ONES[int(d)] for d in whole)
    else:
        spoken = number_to_words(int(whole))
    if fraction:
        spoken += " point " + " ".join(_ONES[int(d)] for d in fraction)
    elif suffix:
        spoken = _ordinal(spoken)
    return f" {spoken} "


def normalise_text(text: str) -> str:
    """Normalise a transcript by the module's policy; may return ``""``.

    >>> normalise_text("Don't pay $1,200 on the 3rd!")
    "don't pay one thousand two hundred on the third"
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = _NUMBER.sub(_spell_number, text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _KEEP.sub(" ", text)
    # Apostrophes only survive inside words: "'quoted'" and "dogs'" lose them.
    words = [w.strip("'") for w in text.split(" ")]
    return _SPACES.sub(" ", " ".join(w for w in words if w)).strip()


@dataclass(frozen=True)
class CharTokenizer:
    """Characters of normalised text, plus blank/start/end symbols.

    Index 0 is ``<blank>`` (the CTC blank, also used as padding), 1 is ``<sos>``, 2 is
    ``<eos>``; the remaining indices are ``symbols`` in order.
    """

    symbols: tuple[str, ...] = tuple(" '" + "abcdefghijklmnopqrstuvwxyz")

    def __post_init__(self) -> None:
        if len(set(self.symbols)) != len(self.symbols) or not self.symbols:
            raise ValueError(f"tokenizer symbols must be unique and non-empty; got {self.symbols!r}")
        if any(len(s) != 1 for s in self.symbols):
            raise ValueError(f"tokenizer symbols must be single characters; got {self.symbols!r}")

    @property
    def vocab(self) -> tuple[str, ...]:
        return (BLANK, SOS, EOS, *self.symbols)

    @property
    def vocab_size(self) -> int:
        return len(self.symbols) + 3

    blank_id = 0
    sos_id = 1
    eos_id = 2

    def encode(self, text: str) -> list[int]:
        """Token ids of ``normalise_text(text)`` (no start/end symbols)."""
        lookup = {s: i + 3 for i, s in enumerate(self.symbols)}
        normalised = normalise_text(text)
        try:
            return [lookup[ch] for ch in normalised]
        except KeyError as e:
            raise ValueError(
                f"character {e.args[0]!r} of {normalised!r} is not in the tokenizer's symbols "
                f"{''.join(self.symbols)!r}"
            ) from e

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids; stops at ``<eos>`` and skips blank and ``<sos>``."""
        chars: list[str] = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i >= 3:
                chars.append(self.symbols[i - 3])
        return _SPACES.sub(" ", "".join(chars)).strip()

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def to_dict(self) -> dict[str, object]:
        return {"type": "char", "symbols": "".join(self.symbols)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CharTokenizer:
        if data.get("type") != "char" or not isinstance(data.get("symbols"), str):
            raise ValueError(f"not a character tokenizer description: {data!r}")
        return cls(symbols=tuple(data["symbols"]))  # type: ignore[arg-type]
