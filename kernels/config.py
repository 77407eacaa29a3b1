"""Tunables of the compiled kernels, each with the measurement that chose it.

Machine of record: 2-core AMD EPYC (AVX2 + FMA), float32, 2 threads; see
../shared/ANCHORS.md for the peer numbers.
"""

# --- conv2d (kernels/cpu/conv.py) -------------------------------------------
# Upper bound on the scratch memory one conv2d call may allocate for its
# lowered (im2col-style) input; the batch is processed in tiles that fit.
# Users can change it at run time: fastml.kernels.config.CONV_WORKSPACE_BYTES = ...
CONV_WORKSPACE_BYTES = 64 * 1024 * 1024


# --- recurrent (kernels/cpu/recurrent.py) ------------------------------------
# Batch size from which the per-step hidden projection h @ W_hh^T goes to BLAS
# (np.dot inside the compiled loop) instead of the plain compiled loop.
RECURRENT_BLAS_MIN_BATCH = 8
