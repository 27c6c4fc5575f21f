import pytest

from asr.text import CharTokenizer, normalise_text, number_to_words


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("Don\u2019t  STOP", "don't stop"),
        ("'quoted' dogs' bowls", "quoted dogs bowls"),
        ("It costs 1,200 dollars", "it costs one thousand two hundred dollars"),
        ("the 3rd and 21st", "the third and twenty first"),
        ("pi is 3.14", "pi is three point one four"),
        ("café naïve", "cafe naive"),
        ("semi-colon;dash", "semi colon dash"),
        ("?!...", ""),
    ],
)
def test_normalise_text(raw, expected):
    assert normalise_text(raw) == expected


@pytest.mark.parametrize(
    ("n", "words"),
    [(0, "zero"), (13, "thirteen"), (40, "forty"), (105, "one hundred five"),
     (2024, "two thousand twenty four"), (1_000_001, "one million one")],
)
def test_number_to_words(n, words):
    assert number_to_words(n) == words


def test_number_to_words_rejects_negative():
    with pytest.raises(ValueError, match="got -1"):
        number_to_words(-1)


def test_tokenizer_round_trip():
    tok = CharTokenizer()
    text = "it's a test of twenty two words"
    ids = tok.encode(text)
    assert min(ids) >= 3
    assert tok.decode(ids) == text
    assert tok.decode([*ids, tok.eos_id, *tok.encode("ignored")]) == text
    assert tok.decode([tok.sos_id, *ids]) == text


def test_tokenizer_special_ids_and_serialisation():
    tok = CharTokenizer()
    assert tok.vocab[:3] == ("<blank>", "<sos>", "<eos>")
    assert tok.vocab_size == len(tok.vocab) == 31
    assert CharTokenizer.from_dict(tok.to_dict()) == tok


def test_tokenizer_errors():
    with pytest.raises(ValueError, match="not in the tokenizer's symbols"):
        CharTokenizer(symbols=tuple("abc")).encode("abd")
    with pytest.raises(ValueError, match="unique"):
        CharTokenizer(symbols=("a", "a"))
    with pytest.raises(ValueError, match="not a character tokenizer"):
        CharTokenizer.from_dict({"type": "bpe"})
