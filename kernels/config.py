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
# Measured N32 C64 32x32 float32, one thread (NUMBA_NUM_THREADS=1, torch 1
# thread), CPU time, min of 15 interleaved runs (/tmp script in the report;
# the 2-core machine was shared, load ~4, so 2-thread wall times were
# dominated by scheduler quanta of 4-8 ms for every peer):
#   op (fastml kernel)            fastml   torch NCHW   torch channels_last
#   max 2x2 s2 fwd (window2x2)    1.07 ms  13.7 ms      1.25 ms
#   max 2x2 s2 fwd+bwd            3.05     17.2         3.44
#   avg 2x2 s2 fwd (window2x2)    0.89      7.8         0.94
#   avg 2x2 s2 fwd+bwd            2.05     14.4         2.41
#   max 3x3 s1 p1 fwd (separable) 5.20     61.9         3.76
#   max 3x3 s1 p1 fwd+bwd         9.99     64.5         7.52
# Before (one scalar scan per window): max 2x2 19 ms, max 3x3 71 ms, avg 2x2 3.4 ms.
# What mattered: (1) no negative-index wraparound in the row loops (index with
# uint64) and selects instead of branches, so LLVM vectorizes them; (2) the
# candidate index as an int32 code, constant per tap, added to the window start
# only at the int64 store (int64 selects ran at half the lanes and were built
# lane by lane); (3) no conditional store back into the array just loaded
# (LLVM turns that into vmaskmovps, microcoded on this AMD core).
#
# Pooling kernels split the N*C planes into this many tasks per Numba thread;
# each task allocates its row scratch once.
POOL_TASKS_PER_THREAD = 4
# The separable max-pooling kernel keeps in-plane positions in int32 scratch
# (half the vector work of int64); planes of 2**31 elements or more use the
# direct kernel.
POOL_INT32_PLANE_LIMIT = 2**31
# Activations, 2M float32 elements (4096x1000 for softmax), one thread:
#   op            Numba libm loop   now (NumPy ufunc step)   torch
#   sigmoid       20.0 ms           4.1 ms                   2.0 ms
#   tanh          50.7              5.5 (np.tanh)            8.5
#   softmax       42.4              17.1                     6.1
#   log_softmax   27.6              15.1                     6.8
#   relu          0.69 (kept)       -                        0.43-0.66
# Numba has no SIMD exp/tanh here, so the transcendental step is NumPy's.

# --- recurrent (kernels/cpu/recurrent.py) ------------------------------------
# Batch size from which the per-step hidden projection h @ W_hh^T goes to BLAS
# (np.dot inside the compiled loop) instead of the plain compiled loop.
# LSTM T50 I128 forward, 1 thread, BLAS vs loop: H64 N4 0.61 vs 0.50 ms,
# N8 0.88 vs 1.05 ms; H256 N4 5.5 vs 5.1 ms, N8 8.2 vs 10.8 ms.
RECURRENT_BLAS_MIN_BATCH = 8
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

# --- CUDA (kernels/cuda/*.py) -------------------------------------------------
# Launch configuration of the numba.cuda kernels. NOT yet measured on a GPU:
# no device was lent to the session that wrote them, so these are the usual
# starting points (warp multiples, 16x16 shared-memory tiles = 2 KiB float32
# per operand tile); `fastml bench --ops ... ` on a GPU is how to retune them.
# Under NUMBA_ENABLE_CUDASIM=1 every CUDA thread is a Python thread, so the
# test suite uses tiny shapes; these values still apply there.
#
# Threads per block of the 1-D elementwise / gather kernels (activations,
# pooling, conv backward-data).
CUDA_THREADS_PER_BLOCK = 128
# Threads per block of the row reductions (softmax rows, bias/column sums,
# conv grad_weight entries): one block per row, a shared-memory tree reduction
# (a power of two).
CUDA_REDUCE_THREADS = 64
# Square tile edge of the shared-memory GEMM (linear, recurrent projections)
# and of the implicit-GEMM conv2d (weight tile x virtual im2col tile).
CUDA_GEMM_TILE = 16
# conv2d forward: the direct kernel (one thread per output pixel, the output
# channel's whole (C/groups, R, S) filter staged in shared memory) runs while
# that filter has at most this many taps; larger filters (many input
# channels) use the implicit-GEMM kernel, whose reduction is tiled instead.
CUDA_CONV_DIRECT_MAX_TAPS = 256
# Output pixels per block of the direct conv2d kernel.
CUDA_CONV_DIRECT_THREADS = 128
# grad_input of stride-1 convs with few input channels runs the direct kernel
# as a transposed conv when out_channels/groups is at most this.
CONV_DIRECT_BACKWARD_MAX_OUT_CHANNELS = 256
