"""Speech corpora: the default synthetic corpus (espeak-ng, Flite, Festival) and LibriSpeech manifests.

espeak-ng speaks most of it; Flite, where installed, a second training split
(``train_flite``); Festival, where installed, the held-out ``cross_synth`` evaluation split.
The ``natural`` evaluation split speaks people's sentences (WordNet's usage examples, read
from an installed ``wordnet-base``) rather than generated ones.

Importing this package needs neither espeak-ng nor wordfreq; they are loaded only when a
corpus is generated (the optional ``corpus`` extra; espeak-ng is GPL-3.0).

>>> from asr.corpus import CorpusConfig, ensure_corpus
>>> paths = ensure_corpus(CorpusConfig.tiny())      # doctest: +SKIP
>>> paths.manifest("train")                          # doctest: +SKIP

A caller that needs some splits only asks for those; the others are generated (with the
same content) when first asked for:

>>> ensure_corpus(splits=("test",)).manifest("test")  # doctest: +SKIP
"""

from asr.corpus.build import CorpusPaths, default_cache_dir, ensure_corpus
from asr.corpus.config import SPLITS, CorpusConfig
from asr.corpus.librispeech import librispeech_to_manifest

__all__ = [
    "SPLITS",
    "CorpusConfig",
    "CorpusPaths",
    "default_cache_dir",
    "ensure_corpus",
    "librispeech_to_manifest",
]
