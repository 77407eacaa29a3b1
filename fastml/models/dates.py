"""A generated translation task: dates written in words -> ISO 8601 ("the twenty-third of march 2021" -> "2021-03-23").

Dates are drawn uniformly from 1900-01-01 .. 2099-12-31 with a fixed seed and written in one of several
English formats. Sources are tokenised into words (a year's digits become separate tokens, so unseen years
still map to known tokens); targets are the ISO string's characters.
"""
from __future__ import annotations

import datetime as _dt

import numpy as np

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]
_UNITS = ["", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth"]
_TEENS = {10: "tenth", 11: "eleventh", 12: "twelfth", 13: "thirteenth", 14: "fourteenth", 15: "fifteenth",
          16: "sixteenth", 17: "seventeenth", 18: "eighteenth", 19: "nineteenth", 20: "twentieth", 30: "thirtieth"}
_TENS = {2: "twenty", 3: "thirty"}

FORMATS = (
    "the {day} of {month} {year}",
    "{month} the {day} {year}",
    "{day} of {month} {year}",
    "{day} {month} {year}",
    "{month} {day} , {year}",
)

PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
SPECIALS = (PAD, SOS, EOS, UNK)


def ordinal(day: int) -> str:
    """1 -> "first", 23 -> "twenty-third", 30 -> "thirtieth"."""
    if day < 10:
        return _UNITS[day]
    if day in _TEENS:
        return _TEENS[day]
    return f"{_TENS[day // 10]}-{_UNITS[day % 10]}"


def date_in_words(date: _dt.date, fmt: str = FORMATS[0]) -> str:
    return fmt.format(day=ordinal(date.day), month=MONTHS[date.month - 1], year=date.year)


def generate(n: int, seed: int = 0, start=_dt.date(1900, 1, 1), end=_dt.date(2099, 12, 31)):
    """``n`` pairs ``(words, iso)`` of distinct dates, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    span = (end - start).days + 1
    if n > span:
        raise ValueError(f"generate: `n` (={n}) must be at most the number of days in the range (={span})")
    offsets = rng.choice(span, size=n, replace=False)
    formats = rng.integers(0, len(FORMATS), size=n)
    pairs = []
    for offset, k in zip(offsets, formats):
        date = start + _dt.timedelta(days=int(offset))
        pairs.append((date_in_words(date, FORMATS[k]), date.isoformat()))
    return pairs


def source_tokens(text: str) -> list:
    """Words, with every all-digit word split into its digits."""
    tokens = []
    for word in text.split():
        tokens.extend(list(word) if word.isdigit() else [word])
    return tokens


def target_tokens(text: str) -> list:
    return list(text)


class Vocab:
    """Token <-> id tables built from data; ids 0..3 are <pad>, <sos>, <eos>, <unk>."""

    def __init__(self, token_lists):
        seen = sorted({tok for tokens in token_lists for tok in tokens} - set(SPECIALS))
        self.itos = list(SPECIALS) + seen
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}

    def __len__(self):
        return len(self.itos)

    @property
    def pad(self):
        return 0

    @property
    def sos(self):
        return 1

    @property
    def eos(self):
        return 2

    def encode(self, tokens):
        return [self.stoi.get(tok, 3) for tok in tokens]

    def decode(self, ids, join=""):
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos:
                break
            if i in (self.pad, self.sos):
                continue
            out.append(self.itos[i])
        return join.join(out)


def encode_batch(vocab: Vocab, token_lists, add_sos=False, add_eos=False):
    """Pad token lists to ``(N, T_max)`` int64 ids (right padding) and return ``(ids, lengths)``."""
    seqs = [([vocab.sos] if add_sos else []) + vocab.encode(t) + ([vocab.eos] if add_eos else []) for t in token_lists]
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    ids = np.full((len(seqs), int(lengths.max())), vocab.pad, dtype=np.int64)
    for row, seq in zip(ids, seqs):
        row[:len(seq)] = seq
    return ids, lengths
