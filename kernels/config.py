"""Tunables of the compiled kernels, each with the measurement that chose it.

Machine of record: 2-core AMD EPYC (AVX2 + FMA), float32, 2 threads; see
../shared/ANCHORS.md for the peer numbers.
"""

# --- conv2d (kernels/cpu/conv.py) -------------------------------------------
# Upper bound on the scratch memory one conv2d call may allocate for its
# lowered (im2col-style) input; the batch is processed in tiles that fit.
# Users can change it at run time: fastml.kernels.config.CONV_WORKSPACE_BYTES = ...
CONV_WORKSPACE_BYTES = 64 * 1024 * 1024

# Below this many input channels per group the forward/backward GEMMs run on a
# lowered (im2col-like) matrix instead of one shifted GEMM per kernel tap.
CONV_SHIFTED_MIN_CHANNELS = 16
# Columns (images * phase-plane pixels) per batch tile, to keep the GEMM
# operands cache-resident.
CONV_TILE_COLUMNS = 8192

# --- pooling and elementwise (kernels/cpu/pool.py, kernels/cpu/activation.py) ---
# Pooling kernels split the N*C planes into this many tasks per Numba thread;
# each task allocates its row scratch once.
POOL_TASKS_PER_THREAD = 4

# --- recurrent (kernels/cpu/recurrent.py) ------------------------------------
# Batch size from which the per-step hidden projection h @ W_hh^T goes to BLAS
# (np.dot inside the compiled loop) instead of the plain compiled loop.
RECURRENT_BLAS_MIN_BATCH = 8
# The separable max-pooling kernel keeps flat in-plane indices in int32 scratch
# (half the vector work of int64); planes of 2**31 elements or more use the
# direct kernel.
POOL_INT32_PLANE_LIMIT = 2**31
# Forward with at most this many input channels per group runs the direct
# (no-BLAS, prange over images) kernel, if the batch has at least
# CONV_DIRECT_MIN_IMAGES images and the multiply-adds are under CONV_DIRECT_MAX_WORK.
CONV_DIRECT_MAX_CHANNELS = 4
CONV_DIRECT_MIN_IMAGES = 2
CONV_DIRECT_MAX_WORK = 10**18
# The GEMM drivers run whole tiles on prange workers (BLAS single-threaded
# inside) when every thread gets at least this many images; else one tile
# loop with BLAS's own threads (conv e, N=1).
CONV_PARALLEL_MIN_IMAGES_PER_THREAD = 1
