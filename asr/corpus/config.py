"""What the default synthetic corpus holds: :class:`CorpusConfig` and its presets."""

from __future__ import annotations

from dataclasses import dataclass, field

from asr.corpus.augment import AugmentConfig
from asr.corpus.variety import VarietyConfig

__all__ = [
    "FESTIVAL_SPLITS",
    "FLITE_SPLITS",
    "NATURAL_SPLITS",
    "SPLITS",
    "TRAINING_SPLITS",
    "CorpusConfig",
]

# In planning order: a split added later goes last, so the others keep their sentences,
# voices and audio.
SPLITS = (
    "train",
    "dev",
    "test",
    "unseen",
    "trimmed",
    "cross_synth",
    "train_flite",
    "natural",
    "train_extra",
)
# Splits spoken by Festival rather than espeak-ng: generated only where Festival is installed.
FESTIVAL_SPLITS = ("cross_synth",)
# Splits spoken by Flite: generated only where Flite is installed.
FLITE_SPLITS = ("train_flite",)
# Splits whose sentences are WordNet's usage examples: generated only where it is installed.
# Where WordNet is missing their items are left out of the plan, which moves the task
# boundaries of any split after them: ``train_extra`` (added later, so last) then keeps its
# sentences and voices, but the espeak state its first task starts from differs.
NATURAL_SPLITS = ("natural",)
# Splits shaped for training (varied onsets, levels and voices; partly augmented).
TRAINING_SPLITS = ("train", "train_flite", "train_extra")

# Variants held out of training: male, female, Klatt, robotic, whispered and character
# voices, so "unseen" measures generalisation across kinds of voice, not just new names.
_UNSEEN_VARIANTS = (
    "Annie",
    "Storm",
    "boris",
    "f2",
    "grandma",
    "iven3",
    "klatt3",
    "m4",
    "robosoft3",
    "steph2",
    "whisperf",
    "zac",
)


@dataclass(frozen=True)
class CorpusConfig:
    """Everything that determines the synthetic corpus; equal configs give identical corpora.

    The defaults give about 25 hours of ``train`` speech (4.3 s per utterance on average)
    over a 20,000-word vocabulary, spoken by 6 accents × 91 variants at varied rate and
    pitch, half of them further transformed in pitch and formants, with varied onsets,
    offsets and levels, and 60% of training utterances augmented; dev, test and unseen hold
    1,500 clean utterances each, ``trimmed`` 1,000 clean ones with no silence around the
    speech, and ``cross_synth`` 1,000 spoken by Festival (never used in training).
    ``train_flite`` adds 4,000 training utterances (about 5.5 h) spoken by Flite's three
    voices, shaped and augmented as ``train``; ``natural`` 1,000 clean ones like ``test``
    whose sentences are people's (WordNet's usage examples) rather than generated.
    ``train_extra`` adds 63,000 more espeak-ng training utterances (about 75 h) made as
    ``train`` (new sentences, so still disjoint from every evaluation split); it was added
    when a model trained for tens of passes over ``train`` scored WER 0.13 on it and 0.23 on
    ``dev``, and grown from 21,000 to 63,000 (its first 21,000 unchanged) when half a pass
    over the first 21,000 had been worth a point of test WER.
    ``natural_train_fraction`` puts WordNet sentences (a pool disjoint from ``natural``'s)
    into training too; it is 0 by default, so the default corpus needs no WordNet.
    """

    # Seed of every random choice (sentences, voices, augmentation, espeak's noise).
    seed: int = 0
    # Most frequent usable English words drawn from: broad, so spelling must be learnt.
    vocabulary_size: int = 20_000
    # Words drawn with probability ∝ frequency ** exponent: < 1 lets rare words be heard.
    frequency_exponent: float = 0.5
    # Sentence lengths in words, drawn uniformly; "words" in the manifest allows curricula.
    min_words: int = 3
    max_words: int = 20
    # Share of sentences that are free word sequences rather than shaped sentences.
    free_sequence_fraction: float = 0.4
    # Utterances per split: ~25 h of training audio, enough for a model to generalise.
    train_utterances: int = 21_000
    # Dev: new sentences, training voices; for model selection and early stopping.
    dev_utterances: int = 1_500
    # Test: new sentences, training voices; >= 1,000 so WER noise stays near ±1 point.
    test_utterances: int = 1_500
    # Unseen: new sentences by accents/variants absent from training; >= 1,000 likewise.
    unseen_utterances: int = 1_500
    # Trimmed: new sentences, training voices, no silence before or after, varied levels.
    trimmed_utterances: int = 1_000
    # Cross-synth: new sentences spoken by Festival, a synthesiser training never hears.
    cross_synth_utterances: int = 1_000
    # Train-flite: more training sentences, spoken by Flite (a second training synthesiser).
    train_flite_utterances: int = 4_000
    # Natural: WordNet's usage examples (never in training), training voices, clean.
    natural_utterances: int = 1_000
    # Train-extra: more espeak-ng training utterances, made as train's (planned last, so
    # growing it keeps its first utterances and every other split as they were).
    train_extra_utterances: int = 63_000
    # Share of training sentences (train, train_flite, train_extra) taken from WordNet's
    # training pool instead of the generator (needs WordNet installed when > 0).
    natural_train_fraction: float = 0.0
    # Whole accents never heard in training (spoken only in "unseen").
    unseen_accents: tuple[str, ...] = ("en-029", "en-gb-x-gbcwmd")
    # Whole voice variants never heard in training (spoken only in "unseen").
    unseen_variants: tuple[str, ...] = _UNSEEN_VARIANTS
    # Speaking rate range in words per minute (espeak's default is 175).
    rate_range: tuple[int, int] = (130, 230)
    # Base pitch range on espeak's 0–100 scale (default 50).
    pitch_range: tuple[int, int] = (20, 80)
    # Silence added before and after the speech, seconds (uniform in the range).
    padding_seconds: tuple[float, float] = (0.05, 0.3)
    # Peak level each evaluation utterance is scaled to (uniform in the range).
    peak_range: tuple[float, float] = (0.25, 0.95)
    # Onset, offset, level and voice variety of training audio (and the levels of "trimmed").
    variety: VarietyConfig = field(default_factory=VarietyConfig)
    # Festival's speaking-rate stretch and intonation mean (Hz) for cross_synth, uniform.
    festival_stretch: tuple[float, float] = (0.85, 1.2)
    festival_pitch_hz: tuple[float, float] = (90.0, 140.0)
    # Flite's speaking-rate stretch and intonation mean (Hz) for train_flite, uniform; the
    # pitch range spans men's and women's voices for each of its three speakers.
    flite_stretch: tuple[float, float] = (0.85, 1.2)
    flite_pitch_hz: tuple[float, float] = (85.0, 230.0)
    # How training audio is perturbed (dev, test and unseen stay clean).
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    # Storage: 16-bit "flac" (about half the disk of "wav", slightly slower to write).
    audio_format: str = "flac"

    def __post_init__(self) -> None:
        if self.vocabulary_size < 100:
            raise ValueError(f"vocabulary_size must be at least 100; got {self.vocabulary_size}")
        if self.frequency_exponent < 0:
            raise ValueError(f"frequency_exponent must be >= 0; got {self.frequency_exponent}")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(
                f"need 1 <= min_words <= max_words; got min_words={self.min_words}, "
                f"max_words={self.max_words}"
            )
        if not 0.0 <= self.free_sequence_fraction <= 1.0:
            raise ValueError(
                f"free_sequence_fraction must be in [0, 1]; got {self.free_sequence_fraction}"
            )
        if not 0.0 <= self.natural_train_fraction <= 1.0:
            raise ValueError(
                f"natural_train_fraction must be in [0, 1]; got {self.natural_train_fraction}"
            )
        for split in SPLITS:
            count = getattr(self, f"{split}_utterances")
            if not isinstance(count, int) or count < 1:
                raise ValueError(f"{split}_utterances must be a positive integer; got {count!r}")
        if not self.unseen_accents and not self.unseen_variants:
            raise ValueError(
                "the unseen split needs held-out voices: give unseen_accents or unseen_variants"
            )
        self._check_range("rate_range", self.rate_range, 80, 450)
        self._check_range("pitch_range", self.pitch_range, 0, 100)
        self._check_range("padding_seconds", self.padding_seconds, 0.0, 5.0)
        self._check_range("peak_range", self.peak_range, 0.01, 1.0)
        if self.audio_format not in ("flac", "wav"):
            raise ValueError(f"audio_format must be 'flac' or 'wav'; got {self.audio_format!r}")
        self._check_range("festival_stretch", self.festival_stretch, 0.5, 2.0)
        self._check_range("festival_pitch_hz", self.festival_pitch_hz, 50.0, 300.0)
        self._check_range("flite_stretch", self.flite_stretch, 0.5, 2.0)
        self._check_range("flite_pitch_hz", self.flite_pitch_hz, 50.0, 400.0)
        if not isinstance(self.variety, VarietyConfig):
            raise TypeError(f"variety must be a VarietyConfig; got {type(self.variety).__name__}")
        if not isinstance(self.augmentation, AugmentConfig):
            raise TypeError(
                f"augmentation must be an AugmentConfig; got {type(self.augmentation).__name__}"
            )

    @staticmethod
    def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
        if len(value) != 2 or not low <= value[0] <= value[1] <= high:
            raise ValueError(
                f"{name} must be (min, max) with {low} <= min <= max <= {high}; got {value!r}"
            )

    def utterances(self, split: str) -> int:
        """Number of utterances of ``split`` (one of :data:`SPLITS`)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits are {SPLITS}")
        return int(getattr(self, f"{split}_utterances"))

    @classmethod
    def tiny(cls, seed: int = 0) -> CorpusConfig:
        """A corpus of a few dozen short utterances for tests (generates in seconds)."""
        return cls(
            seed=seed,
            vocabulary_size=2_000,
            max_words=8,
            train_utterances=24,
            dev_utterances=6,
            test_utterances=6,
            unseen_utterances=6,
            trimmed_utterances=4,
            cross_synth_utterances=4,
            train_flite_utterances=4,
            natural_utterances=4,
            train_extra_utterances=4,
        )
