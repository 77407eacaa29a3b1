"""Reference models from the notes, trained offline on data that ships with packages.

- :class:`LeNet` (a small CNN) on scikit-learn's 8x8 digits: :func:`lenet.train_digits`.
- :class:`AutoRegressive` (the T-th order Markov model) on statsmodels' sunspots: :func:`autoregressive.sunspot_experiment`.
- :class:`Seq2Seq` (GRU encoder-decoder) translating dates in words to ISO: :func:`seq2seq.train_dates`.
"""
from . import autoregressive, dates, lenet, seq2seq
from .autoregressive import AutoRegressive
from .lenet import LeNet
from .seq2seq import Seq2Seq

__all__ = ["LeNet", "AutoRegressive", "Seq2Seq", "lenet", "autoregressive", "seq2seq", "dates"]
