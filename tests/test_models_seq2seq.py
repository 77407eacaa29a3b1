"""Seq2Seq on generated dates: the generator, vocabularies, gradients (finite differences), a short training
run, greedy decoding, and (slow) the full >= 95% exact-match target."""
import datetime

import numpy as np
import pytest

from _compare import assert_close
from fastml.models import dates, seq2seq


def test_dates_in_words():
    assert dates.date_in_words(datetime.date(2021, 3, 23)) == "the twenty-third of march 2021"
    assert [dates.ordinal(d) for d in (1, 2, 3, 11, 12, 20, 21, 30, 31)] == [
        "first", "second", "third", "eleventh", "twelfth", "twentieth", "twenty-first", "thirtieth", "thirty-first"]
    pairs = dates.generate(300, seed=1)
    assert pairs == dates.generate(300, seed=1) and pairs != dates.generate(300, seed=2)
    assert len({iso for _, iso in pairs}) == 300
    for words, iso in pairs:
        date = datetime.date.fromisoformat(iso)
        assert str(date.year) in words and dates.MONTHS[date.month - 1] in words.split()
    assert dates.source_tokens("march the first 2021") == ["march", "the", "first", "2", "0", "2", "1"]


def test_vocab_roundtrip():
    vocab = dates.Vocab([list("2021-03-23")])
    ids, lengths = dates.encode_batch(vocab, [list("2021-03-23"), list("13")], add_sos=True, add_eos=True)
    assert ids.shape == (2, 12) and list(lengths) == [12, 4]
    assert vocab.decode(ids[0]) == "2021-03-23" and vocab.decode(ids[1]) == "13"
    assert vocab.encode(["x"]) == [3]  # unknown


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gradients_match_finite_differences(cell):
    rng = np.random.default_rng(0)
    model = seq2seq.Seq2Seq(7, 6, embed_size=3, hidden_size=4, cell=cell, dtype=np.float64, seed=0)
    src = rng.integers(1, 7, size=(3, 5))
    src_len = np.array([5, 3, 4])
    src[1, 3:] = 0
    src[2, 4:] = 0
    tgt_in = rng.integers(1, 6, size=(3, 4))
    tgt_out = rng.integers(1, 6, size=(3, 4))
    tgt_out[0, 3] = 0  # padding, ignored
    loss = seq2seq.SequenceCrossEntropy()

    def value():
        return loss(model(src, tgt_in, src_len), tgt_out)

    value()
    model.zero_grad()
    model.backward(loss.backward())
    eps = 1e-6
    for key in ("src_embedding.weight", "encoder.weight_hh_l0", "decoder.weight_ih_l0", "decoder.bias_hh_l0",
                "tgt_embedding.weight", "output.weight"):
        param = model.params[key]
        for flat in rng.choice(param.size, size=min(4, param.size), replace=False):
            index = np.unravel_index(flat, param.shape)
            if key.endswith("embedding.weight") and index[0] == 0:
                continue  # the padding row has no gradient
            old = param[index]
            param[index] = old + eps
            plus = value()
            param[index] = old - eps
            minus = value()
            param[index] = old
            assert_close(model.grads[key][index], (plus - minus) / (2 * eps), rtol=1e-5, atol=1e-8, err_msg=key)


def test_short_training_and_greedy_decoding():
    result = seq2seq.train_dates(epochs=3, n_train=1000, n_test=50, hidden_size=32, progress=False)
    history = result["history"]
    assert history["loss"][-1] < 0.9 * history["loss"][0]
    assert len(result["samples"]) == 50 and 0.0 <= result["exact_match"] <= 1.0
    data = result["data"]
    ids = result["model"].greedy_decode(data["test"]["src"][:3], data["test"]["src_len"][:3], max_len=5)
    assert ids.shape[0] == 3 and ids.shape[1] <= 5


def test_errors():
    with pytest.raises(ValueError, match="Seq2Seq: `cell` must be 'gru' or 'lstm'"):
        seq2seq.Seq2Seq(5, 5, cell="rnn")
    with pytest.raises(ValueError, match="generate: `n`"):
        dates.generate(10, start=datetime.date(2000, 1, 1), end=datetime.date(2000, 1, 5))


@pytest.mark.slow
def test_full_training_reaches_95_percent_exact_match():
    result = seq2seq.train_dates(progress=False)
    assert result["exact_match"] >= 0.95
