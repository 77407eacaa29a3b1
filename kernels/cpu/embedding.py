"""Embedding lookup and its gradient on the CPU.

The lookup is one NumPy fancy-index gather and the gradient one ``np.add.at``
scatter (both compiled loops in NumPy), so the CPU backend uses the reference
formulation as it is.
"""
from ..reference.embedding import embedding_backward, embedding_forward

__all__ = ["embedding_backward", "embedding_forward"]
