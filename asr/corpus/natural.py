"""Natural English sentences from WordNet's usage examples, read from an installed package.

The sentence generator (:mod:`asr.corpus.sentences`) makes grammatical scaffolds and free
word sequences; this module supplies real sentences written by people: the usage examples
of WordNet 3.0 (about 48,000, e.g. ``"he rented a color television"``), which Debian ships
in ``wordnet-base`` (``/usr/share/wordnet``) under a permissive licence. Nothing is
downloaded and no text is copied into this repository: the sentences are read from the
installed files when a corpus is generated.

Each example is normalised (:func:`asr.text.normalise_text`) and kept when it is between
``min_words`` and ``max_words`` words long and every word is one a synthesiser reads as
written (letters with at most an inner apostrophe, a vowel, no lone letters but ``a`` and
``i``, the rule the generator's vocabulary follows; and no Roman numerals such as ``iii``
or ``etc``, which espeak-ng reads as "the third" or "et cetera"). Duplicates are dropped. A
sentence belongs to the ``"eval"`` pool when a hash of its text says so (one in five) and to
the ``"train"`` pool otherwise, so evaluation sentences never reach training however many of
either a corpus asks for. The pools share no sentence, but WordNet has near-duplicates
(a dozen pairs of 7+ words differ by one word, e.g. "the former" / "the latter"), so a few
``eval`` sentences have a close cousin in ``train``; it matters only when training takes
WordNet sentences (``natural_train_fraction`` > 0).

Why hand-written: the WordNet database format is one line per synset with the examples in
double quotes after ``|``; reading them takes a dozen lines, where NLTK's WordNet reader
would add a large dependency for it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path

import numpy as np

from asr.corpus.sentences import speakable_word
from asr.text import normalise_text

__all__ = [
    "WORDNET_INSTALL_HINT",
    "natural_sentences",
    "wordnet_available",
    "wordnet_dir",
    "wordnet_fingerprint",
]

WORDNET_INSTALL_HINT = (
    "install WordNet's database (Debian/Ubuntu: `apt-get install wordnet-base`), or point "
    "SHRINKML_WORDNET_DIR at a folder holding its data.noun, data.verb, data.adj and data.adv"
)
POOLS = ("train", "eval")
_DATA_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
_EXAMPLE = re.compile(r'"([^"]+)"')
# Words espeak-ng reads as something else: Roman numerals ("iii": "the third") and "etc".
_READ_OTHERWISE = re.compile(r"[ivx]{2,}|etc")
_EVAL_SHARE = 5  # one sentence in five goes to the eval pool


def wordnet_dir() -> Path:
    """Where WordNet's database is read from: ``$SHRINKML_WORDNET_DIR`` or Debian's
    ``/usr/share/wordnet``."""
    return Path(os.environ.get("SHRINKML_WORDNET_DIR") or "/usr/share/wordnet")


def wordnet_available() -> bool:
    """Whether WordNet's four data files are installed where :func:`wordnet_dir` says."""
    folder = wordnet_dir()
    return all((folder / name).is_file() for name in _DATA_FILES)


def wordnet_fingerprint() -> str:
    """A short hash of the installed data files (recorded with a corpus that used them), or
    ``"missing"``."""
    if not wordnet_available():
        return "missing"
    return _fingerprint(str(wordnet_dir()))


@functools.lru_cache(maxsize=2)
def _fingerprint(folder: str) -> str:
    digest = hashlib.sha256()
    for name in _DATA_FILES:
        digest.update((Path(folder) / name).read_bytes())
    return digest.hexdigest()[:16]


def _speakable(sentence: str) -> bool:
    return all(speakable_word(w) and not _READ_OTHERWISE.fullmatch(w) for w in sentence.split())


@functools.lru_cache(maxsize=4)
def _pools(folder: str, min_words: int, max_words: int) -> dict[str, tuple[str, ...]]:
    seen: set[str] = set()
    pools: dict[str, list[str]] = {pool: [] for pool in POOLS}
    for name in _DATA_FILES:
        with open(Path(folder) / name, encoding="latin-1") as f:
            for line in f:
                # Licence lines start with spaces; a synset's gloss follows its " | ".
                if line.startswith(" ") or " | " not in line:
                    continue
                for example in _EXAMPLE.findall(line.split(" | ", 1)[1]):
                    sentence = normalise_text(example)
                    if (
                        sentence in seen
                        or not min_words <= len(sentence.split()) <= max_words
                        or not _speakable(sentence)
                    ):
                        continue
                    seen.add(sentence)
                    bucket = hashlib.sha256(sentence.encode()).digest()[0] % _EVAL_SHARE
                    pools["eval" if bucket == 0 else "train"].append(sentence)
    return {pool: tuple(sorted(sentences)) for pool, sentences in pools.items()}


def natural_sentences(pool: str, seed: int, min_words: int = 3, max_words: int = 20) -> list[str]:
    """Every sentence of one pool, in an order shuffled by ``seed``.

    Args:
        pool: ``"train"`` or ``"eval"`` (disjoint; about 4:1).
        seed: shuffles the order; equal arguments and installed files give equal lists.
        min_words: shortest sentence kept, in words.
        max_words: longest sentence kept, in words.

    Returns:
        Normalised sentences (about 33,700 train and 8,600 eval with Debian's WordNet 3.0
        and 3–20 words).

    Raises:
        ValueError: for an unknown pool or word range.
        FileNotFoundError: if WordNet's database is not installed (the message says how).
    """
    if pool not in POOLS:
        raise ValueError(f"unknown natural-sentence pool {pool!r}; accepted: {', '.join(POOLS)}")
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words; got {min_words}, {max_words}")
    if not wordnet_available():
        raise FileNotFoundError(
            f"natural sentences come from WordNet's database, not found in {wordnet_dir()}: "
            f"{WORDNET_INSTALL_HINT}"
        )
    sentences = list(_pools(str(wordnet_dir()), min_words, max_words)[pool])
    order = np.random.default_rng([seed, 7]).permutation(len(sentences))
    return [sentences[i] for i in order]
