"""A GRU encoder-decoder (sequence to sequence) with teacher forcing and greedy decoding.

The encoder reads the source tokens; its final hidden state starts the decoder and is also fed to the decoder
at every step as a context vector (Cho et al., 2014). Training uses teacher forcing (the decoder sees the true
previous token); :meth:`Seq2Seq.greedy_decode` feeds back its own arg-max.

Example:
    >>> result = train_dates()                # dates in words -> ISO, generated with a fixed seed
    >>> result["exact_match"]                 # on 1,000 held-out dates
"""
from __future__ import annotations

import time

import numpy as np

from .. import nn
from .._backend import no_grad
from .._checks import as_int
from ..losses import CrossEntropyLoss
from ..nn import init
from . import dates
from ._threads import single_threaded


class Seq2Seq(nn.Module):
    """Embedding + GRU (or LSTM) encoder, embedding + GRU/LSTM decoder with the context at every step, linear output.

    Args:
        src_vocab, tgt_vocab: vocabulary sizes. embed_size, hidden_size: widths.
        cell: ``"gru"`` or ``"lstm"``. pad_idx: padding id in both vocabularies (embedding row kept at zero).
        dtype: float32 (default) or float64 parameters.
        seed: int or Generator for the initialisation.

    Shape:
        forward(src ``(N, S)`` ints, tgt_in ``(N, T)`` ints, src_lengths ``(N,)``) -> logits ``(N, T, tgt_vocab)``.
    """

    def __init__(self, src_vocab, tgt_vocab, embed_size=32, hidden_size=128, cell="gru", pad_idx=0, *, dtype=np.float32,
                 seed=None):
        super().__init__()
        fn = "Seq2Seq"
        if cell not in ("gru", "lstm"):
            raise ValueError(f"{fn}: `cell` must be 'gru' or 'lstm', got {cell!r}")
        self.cell = cell
        self.embed_size = as_int(embed_size, fn, "embed_size", minimum=1)
        self.hidden_size = as_int(hidden_size, fn, "hidden_size", minimum=1)
        rng = init.generator(seed)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.src_embedding = nn.Embedding(src_vocab, embed_size, padding_idx=pad_idx, dtype=dtype, seed=rng)
        self.encoder = rnn(embed_size, hidden_size, batch_first=True, dtype=dtype, seed=rng)
        self.tgt_embedding = nn.Embedding(tgt_vocab, embed_size, padding_idx=pad_idx, dtype=dtype, seed=rng)
        self.decoder = rnn(embed_size + hidden_size, hidden_size, batch_first=True, dtype=dtype, seed=rng)
        self.output = nn.Linear(hidden_size, tgt_vocab, dtype=dtype, seed=rng)

    def encode(self, src, src_lengths=None):
        _, state = self.encoder(self.src_embedding(src), lengths=src_lengths)
        return state

    def _hidden(self, state):
        return state[0] if self.cell == "lstm" else state

    def _decode(self, tgt_in, state, context):
        embedded = self.tgt_embedding(tgt_in)
        steps = embedded.shape[1]
        inputs = np.concatenate([embedded, np.repeat(context[:, None, :], steps, axis=1)], axis=2)
        out, state = self.decoder(inputs, state)
        return self.output(out), state

    def forward(self, src, tgt_in, src_lengths=None):
        state = self.encode(src, src_lengths)
        self._shapes = (np.shape(src), np.shape(tgt_in))
        logits, _ = self._decode(tgt_in, state, self._hidden(state)[0])
        return logits

    def backward(self, grad_logits):
        (n, src_len), _ = self._shapes
        grad_inputs = self.decoder.backward(self.output.backward(grad_logits))
        self.tgt_embedding.backward(np.ascontiguousarray(grad_inputs[..., :self.embed_size]))
        grad_h = self.decoder.grad_h0 + grad_inputs[..., self.embed_size:].sum(axis=1)[None]
        zeros = np.zeros((n, src_len, self.hidden_size), dtype=grad_h.dtype)
        if self.cell == "lstm":
            grad_src = self.encoder.backward(zeros, grad_h, self.decoder.grad_c0)
        else:
            grad_src = self.encoder.backward(zeros, grad_h)
        self.src_embedding.backward(grad_src)
        return None

    def greedy_decode(self, src, src_lengths=None, max_len=12, sos=1, eos=2):
        """Token ids ``(N, max_len)``: at each step the arg-max token is fed back (stops early when all saw ``eos``)."""
        with no_grad():
            state = self.encode(src, src_lengths)
            context = self._hidden(state)[0]
            token = np.full((len(context), 1), sos, dtype=np.int64)
            out = np.zeros((len(context), max_len), dtype=np.int64)
            done = np.zeros(len(context), dtype=bool)
            for t in range(max_len):
                logits, state = self._decode(token, state, context)
                token = np.argmax(logits[:, -1], axis=1)[:, None]
                out[:, t] = token[:, 0]
                done |= token[:, 0] == eos
                if done.all():
                    out = out[:, :t + 1]
                    break
        return out

    def extra_repr(self):
        return f"cell={self.cell!r}"


class SequenceCrossEntropy(CrossEntropyLoss):
    """Cross entropy over ``(N, T, V)`` logits and ``(N, T)`` labels (padding ignored), averaged over tokens."""

    def __init__(self, ignore_index=0, label_smoothing=0.0):
        super().__init__(ignore_index=ignore_index, label_smoothing=label_smoothing)

    def forward(self, pred, target):
        return super().forward(np.moveaxis(np.asarray(pred), 2, 1), target)

    def backward(self, grad_output=None):
        return np.ascontiguousarray(np.moveaxis(super().backward(grad_output), 1, 2))


def token_accuracy(pred, target, pad=0):
    mask = target != pad
    return float(np.mean((np.argmax(pred, axis=2) == target)[mask]))


def make_date_data(n_train=8000, n_test=1000, seed=0):
    """Encoded train/test arrays and vocabularies for the dates task (disjoint dates)."""
    pairs = dates.generate(n_train + n_test, seed=seed)
    src_tok = [dates.source_tokens(s) for s, _ in pairs]
    tgt_tok = [dates.target_tokens(t) for _, t in pairs]
    src_vocab = dates.Vocab(src_tok[:n_train])
    tgt_vocab = dates.Vocab(tgt_tok[:n_train])
    src, src_len = dates.encode_batch(src_vocab, src_tok)
    tgt, _ = dates.encode_batch(tgt_vocab, tgt_tok, add_sos=True, add_eos=True)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]

    def part(sl):
        return {"src": src[sl], "src_len": src_len[sl], "tgt_in": tgt_in[sl], "tgt_out": tgt_out[sl],
                "pairs": pairs[sl]}

    return {"train": part(slice(0, n_train)), "test": part(slice(n_train, None)), "src_vocab": src_vocab,
            "tgt_vocab": tgt_vocab}


def translate(model, data_part, tgt_vocab, batch_size=500, max_len=12):
    """Greedy translations (strings) of every source in ``data_part``."""
    out = []
    for start in range(0, len(data_part["src"]), batch_size):
        sl = slice(start, start + batch_size)
        ids = model.greedy_decode(data_part["src"][sl], data_part["src_len"][sl], max_len=max_len,
                                  sos=tgt_vocab.sos, eos=tgt_vocab.eos)
        out.extend(tgt_vocab.decode(row) for row in ids)
    return out


def train_dates(epochs=5, n_train=6000, n_test=1000, batch_size=64, lr=5e-3, hidden_size=128, embed_size=32,
                cell="gru", seed=0, progress=True) -> dict:
    """Train :class:`Seq2Seq` on generated dates and report exact match on ``n_test`` held-out dates."""
    from .. import optim
    from ..train import fit

    data = make_date_data(n_train, n_test, seed)
    train, test = data["train"], data["test"]
    model = Seq2Seq(len(data["src_vocab"]), len(data["tgt_vocab"]), embed_size, hidden_size, cell, seed=seed)
    optimizer = optim.Adam(model, lr=lr)
    start = time.perf_counter()
    with single_threaded():
        history = fit(model, SequenceCrossEntropy(), optimizer,
                      ((train["src"], train["tgt_in"], train["src_len"]), train["tgt_out"]),
                      epochs=epochs, batch_size=batch_size, seed=seed, metric=token_accuracy, clip_grad_norm=1.0,
                      schedule=optim.CosineAnnealingLR(optimizer, T_max=epochs), progress=progress)
        seconds = time.perf_counter() - start
        predictions = translate(model, test, data["tgt_vocab"])
    truth = [iso for _, iso in test["pairs"]]
    exact = float(np.mean([p == t for p, t in zip(predictions, truth)]))
    return {"model": model, "history": history, "exact_match": exact, "train_seconds": seconds,
            "samples": list(zip([s for s, _ in test["pairs"]], predictions, truth)), "data": data}
