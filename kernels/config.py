"""Tunables of the compiled kernels, each with the measurement that chose it.

Machine of record: 2-core AMD EPYC (AVX2 + FMA), float32, 2 threads; see
../shared/ANCHORS.md for the peer numbers.
"""

# --- conv2d (kernels/cpu/conv.py) -------------------------------------------
# Algorithms (see the module docstring):
#   direct  - few input channels per group (conv a, b): prange over images, a
#             Numba kernel summing a whole kernel row of taps per pass over the
#             padded-width plane, 2 output channels at a time; its backward is
#             the same kernel as a transposed conv (grad_input) plus
#             register-blocked dot products (grad_weight). No BLAS.
#   shifted - one BLAS GEMM per kernel tap on a contiguous column slice of the
#             padded, stride-phase-split input (no im2col); conv c, d, e.
#   lowered - copy the R*S shifted slices (memcpy rows) and run one GEMM; small
#             C/groups when the direct kernel doesn't apply (strided backward).
# Parallelism: prange over batch tiles with single-threaded BLAS inside (never
# both thread pools at once); batches smaller than the thread count split the
# GEMM columns instead (conv e).
#
# Measurements that chose them (2-core EPYC shared with 3 other jobs, load 4-6,
# so all timings are noisy; ratio = PyTorch time / fastml time, same process,
# interleaved, 20 rounds, float32, 2 threads unless said):
#   before (im2col + one threaded GEMM per tile): fwd a 0.30, b 0.33, c ~0.6
#   serial driver with threaded BLAS vs prange tiles + 1-thread BLAS, conv c:
#       0.09-0.25 vs 0.73-0.95 (threaded BLAS stalls on every one of its ~300
#       calls when the cores are oversubscribed)
#   direct vs lowered GEMM, fwd a: 1.6-1.9 vs 0.3-0.9; fwd b: 1.1-1.2 vs 0.6-1.0
#   direct kernel inner loop: 0.27 ns/element (10 FMAs) once every index was a
#       non-negative loop counter over a sliced view; a runtime offset in the
#       index kept Numba's negative-index wraparound and ran 12x slower.
#   1 thread, CPU time (min of 40): grad_weight direct vs lowered a 2.0 vs 7.6 ms,
#       b 3.8-4.7 vs 4.6-14 ms; grad_input transposed direct vs lowered
#       a 3.4 vs 6.3 ms, b 4.5 vs 9.1 ms; bias gradient with reassoc 0.09 vs 1.1 ms.
#   direct kernel, an odd channel count ends with one block of three channels
#       (3x3, column stride 1) instead of a pair + a single: conv b grad_input
#       (3 output channels as a transposed conv), 2 threads, interleaved with the
#       old kernel, min/median: 3.71/3.83 -> 3.14/3.24 ms and 3.13/3.73 -> 2.48/3.21.
#       Four channels per pass (5x5) or all 9 taps of a 3x3 per pass were slower
#       in isolation (59 vs 72, 40 vs 48 GFLOP/s): spills past 16 ymm registers.
#   layout helpers (_split_phases, _gather_grad, _merge_phases) copy rows with
#       plain loops instead of slice assignment (which checks overlap per call):
#       64-channel 34x34 image, 1 thread, split 67 -> 51 us, gather 48 -> 33 us;
#       interleaved with the old module, 2 threads, min/median ms: b fwd+bwd's
#       backward 4.25/5.82 -> 3.56/4.76, a backward 3.18/4.31 -> 2.69/4.02,
#       c fwd 26.7/27.8 -> 25.8/27.0, e fwd 3.32/3.51 -> 3.10/3.25, c bwd 54.9 -> 53.0.
#       Column stride 1: one fill for everything between two data rows (51 -> 36
#       us per image); conv b backward 3.76/5.26 -> 3.33/5.02, a 4.10/4.18 -> 3.88/3.99.
#   register-blocked tiles (kernels/cpu/_tile.py conv_tiles; stride 1, one group, >= 6
#       output channels) instead of the pass-per-kernel-row kernel, float32, 2 threads:
#       kernel alone min 0.87 -> 0.74 ms (a) and 1.11 -> 0.92 ms (b) once the kernel-width
#       loop was unrolled for 3 and 5 and 32 channels split 6,6,6,6,4,4 (not ...,6,2);
#       benchmark medians vs PyTorch in its own process (2 rounds): fwd a 0.56-0.64 -> 0.96-1.00,
#       b 0.57-0.67 -> 1.12-1.16. The tiles run ~57 (a, 25 taps per tile call) and ~78 (b)
#       GFLOP/s per core; the rest is padding, the per-image copy in and the scatter out.
#   NaN/Inf check of the backward (_all_finite of x and weight, one serial pass):
#       0.47 ms cold on conv c/d's 8 MiB input, 0.8% / 1.3% of their backward.
# Where the time goes (2 threads unless said): the direct kernel's inner loop
#   runs at 50-72 GFLOP/s per core in isolation; in the kernel ~38 (1 thread),
#   the output write (4.7 MiB on conv a) is ~15-20% of it. The shifted GEMMs are
#   bound by SciPy's OpenBLAS (0.3.30): 64x576 @ 576x2048 sgemm in the kernel's
#   orientation 63-69 GFLOP/s on one core vs 81-85 for NumPy's bundled
#   scipy_openblas64_ 0.3.31 (same call); conv c fwd through the latter
#   (prototype, same kernels) 27.2 -> 22.6 ms at 2 threads, e 1 thread 4.0 -> 3.2.
#   The padded-width layout computes 13% garbage columns on c and d, 7% on e.
#
# Upper bound on the scratch memory one conv2d call may allocate (all workers'
# tile buffers together); the batch is processed in tiles that fit.
# Users can change it at run time: fastml.kernels.config.CONV_WORKSPACE_BYTES = ...
CONV_WORKSPACE_BYTES = 64 * 1024 * 1024
# Below this many input channels per group the GEMM path lowers (one GEMM with
# a C/groups*R*S reduction) instead of one shifted GEMM per tap (reduction
# C/groups would starve BLAS).
CONV_SHIFTED_MIN_CHANNELS = 16
# Columns (images * phase-plane pixels) per batch tile. Conv c fwd ratio with
# 4096 / 8192 / 16384 / 32768: 0.69-0.78 / 0.90-1.04 / 1.02-1.10 / 0.97-1.02
# (separate runs). Re-measured interleaved in one process (2 threads, prange
# tiles + 1-thread BLAS, wall ms min/median of 15-25 rounds, two runs each):
#   16384 / 8192 / 2048 columns: c fwd 25.6/27.8, 25.9/26.9, 25.2/26.7;
#   d fwd 11.8/14.6, 12.0/14.6, 11.9/13.9; c fwd+bwd 73.3/88.3, 70.9/88.0,
#   69.3/81.4 (and 78.8/87.2 vs 71.4/82.1 in a second run); e (N=1) unchanged.
# One 34x34 image (1156 columns) per tile keeps each tap's GEMM output
# (64 x 1156 floats, 0.3 MiB) in L2 across the 9 accumulating GEMMs.
CONV_TILE_COLUMNS = 2048
# Forward with dilation 1, one group, at least TILE_ROWS (6) output channels
# and stride 1 (or any stride, with output rows at least one wide tile long)
# runs the register-blocked conv tiles (_tiled_forward: work
# items are images, or with fewer images than threads bands of output rows,
# chunks of output channels for rows narrower than a tile) while C is at most
# this and one item's buffers for every thread fit CONV_WORKSPACE_BYTES.
# Fourth session, interleaved in one process (2 threads, medians of 10-25
# rounds, two runs), PyTorch / fastml forward:
#   conv c: tiles 0.98, 1.01 vs shifted GEMMs 0.94, 0.89;
#   conv e (N=1, two 32-channel chunks): 0.92, 1.00 vs 0.85, 0.77.
# Seventh session, conv e in two bands of 28 rows (each item pads its own 30
# input rows: no serial padding pass before the items, one parallel launch)
# instead of two 32-channel chunks of one shared padded image: PyTorch / fastml
# 0.96 -> 1.06 (medians of 8 rounds of alternating processes as above, the
# tiles of 4808b7a both). One thread's chunk kernel alone ran 1.73x faster on two
# threads; the serial padding pass was 75-100 us of the 1.6-1.9 ms.
CONV_TILED_MAX_CHANNELS = 10**9
# Rows of the "long" conv tile (CONV_LONG_ROWS output channels by three SIMD vectors,
# 24 float32 columns), which _tile.conv_rows uses for output rows of an odd number
# of vectors (conv a: 24 columns, e: 56 = 24 + 16 + 16). Fifth session, conv a's
# tiles along its output rows, one core, 5x5 taps into 24 columns (no garbage):
#   3 x 3 vectors 93 GFLOP/s, 4 x 3 85 (12 accumulators + 3 B + 1 broadcast = all 16
#   ymm), 6 x 2 at columns 0 and 8 68 useful (90 computed); the flat padded-width
#   tiles ran 56 useful (65 computed) on the same shape.
CONV_LONG_ROWS = 3
# Output rows per conv tile call (_tile.conv_rows, its ``rows_per_call``): a kernel with at most this many
# taps (in_channels * kH * kW) runs each tile for every output row of its band in one call, stepping the
# input and output pointers, instead of one row per call. Eighth session: a tile call costs about 23 ns
# besides its reduction (switch dispatch, array views, bias and stores), 17.6 ns per 3x3 input channel
# (one core, K64 3x3 on N8 32x32, 1-12 channels, linear fit), so the 27 taps of conv b spent about 30%
# of their time outside the reduction. Interleaved in one process, 2 threads, medians, one row per call
# against every row of the band: b 1.23 -> 0.95 ms (1.22-1.29x over three runs, 1.10x in a fourth),
# a 1.04-1.07x, K64 3x3 with 6 / 12 / 24 / 48 channels 1.10 / 1.05 / 1.02 / 1.02x; with 576 taps
# level on c (1.00-1.02x) and slower on d (0.95x) and e (0.87x: its bands of 28 rows read 64 channels'
# rows from L2 for each block of output channels), so those keep one row per call.
CONV_ROWS_PER_CALL_MAX_TAPS = 128
# Conv tile variants (_tile.tap_kind), seventh session: 3x3 kernels at column stride 1 or 2, and 5x5
# at stride 1, run a variant with every tap of a channel unrolled at constant offsets; the rest loop
# over kernel rows and columns at run time. Before, kernel widths 3 and 5 unrolled the column loop and
# the kernel-row loop always ran at run time. Found by compiling conv_rows with conv e's shape folded in
# as constants: 25-35% faster than the same code with run-time arguments, and the kernel-row loop was
# the part that mattered (kw = 3 alone +7-16%, sw = 1 alone +5-7%; kh = kw = 3 with sw = sh = 1 as fast
# as every argument constant). Forward, 2 threads, PyTorch / fastml, medians of 6 rounds of alternating
# processes (the old tree's, then this one's, each timing PyTorch call by call beside its own), old ->
# new: b 1.06 -> 1.28, c 0.79 -> 1.08, d 0.94 -> 1.25, e 0.77-0.83 -> 0.96-1.00; a (5x5) 1.30 -> 1.30.
# (Call-by-call alternation with PyTorch in one process slows both peers - PyTorch's OpenMP threads
# spin after each call; an LSTM B1 forward ran 3.65 ms after PyTorch calls, 0.49 ms alone - so these
# figures compare the two trees only; the README's ratios come from bench/paired.py.)
# Other widths lost their unrolled column loop (1x3, 3x3 at stride 3, 5x5 at stride 2 run the loops):
# four variants per tile shape (three before; keeping the two unrolled widths made five). Cold
# fastml.warmup(): 227.6 s before, 237.0 s with four variants, 239.7 s with five.
# Conv d (stride 2) on the tiles, sixth session: each image's padded planes are split into their
# two column phases (the rows stay whole; the row stride only steps the tile's rows), so a tap reads
# adjacent elements and the unrolled tiles run unchanged. One core: the tiles 70-85 GFLOP/s on d's
# shape, the split 49 us per image (177 with a view per 17-column row and a run-time stride; the
# fifth session's four-phase split, 80 us, made the tiles only level with the shifted GEMMs).
# Interleaved in one process, medians of 11 over 6 rounds (2 threads), ms: tiles 10.1-12.0
# (median 11.65), shifted GEMMs 10.8-13.4 (12.75), PyTorch 10.4-13.7 (12.78).
# Otherwise, forward with at most this many input channels per group runs the
# pass-per-kernel-row direct kernel, if the batch has at least CONV_DIRECT_MIN_IMAGES images (prange
# over images) and the multiply-adds are under CONV_DIRECT_MAX_WORK.
CONV_DIRECT_MAX_CHANNELS = 4
CONV_DIRECT_MIN_IMAGES = 2
CONV_DIRECT_MAX_WORK = 10**18
# grad_input of stride-1 convs with few input channels runs the direct kernel
# as a transposed conv when out_channels/groups is at most this.
CONV_DIRECT_BACKWARD_MAX_OUT_CHANNELS = 256
# The GEMM drivers run whole tiles on prange workers (BLAS single-threaded
# inside) when every thread gets at least this many images; else the workers
# split the GEMM columns of each tile (conv e, N=1: 0.52-1.0 -> 2.6-3.9).
CONV_PARALLEL_MIN_IMAGES_PER_THREAD = 1

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
# Batch size from which a layer runs the batched kernel (time-major, batch-minor,
# prange over hidden-unit chunks, register-blocked products per worker and step)
# instead of the per-sequence loop (a plain compiled mat-vec per row, no BLAS).
# LSTM T50 I128, float32, 2 threads, best of 20, loop vs batched (ms):
#   H64  N1 fwd 0.16 vs 0.78, N4 0.54 vs 1.00, N8 0.87 vs 1.11 (fwd+bwd 2.49 vs 2.34)
#   H256 N1 fwd 2.02 vs 5.13, N4 6.02 vs 5.97, N8 9.56 vs 5.54 (fwd+bwd 22.1 vs 14.3),
#   N16 19.4 vs 8.2 (fwd+bwd 44.2 vs 20.4).
# (The Cho GRU, reset_after=False, always takes the loop, with np.dot from here on.)
RECURRENT_BLAS_MIN_BATCH = 8
# With two Numba threads and a batch of at least twice RECURRENT_BLAS_MIN_BATCH,
# the batched path gives each thread half of the batch for the whole sequence
# (forward and BPTT; no sync between steps) instead of half of every step's
# hidden units (one sync per step). False keeps the hidden-unit split.
# Fourth session, B32 T50 I128 H256 float32, interleaved in one process
# (medians of 20 fwd / 10 fwd+bwd rounds, three runs), batch split vs unit split:
#   LSTM fwd 13.75/12.47/13.13 vs 15.20/13.30/14.05 ms, fwd+bwd 34.2/36.8/35.7 vs 35.1/39.6/37.0;
#   GRU fwd 10.4/9.6/9.9 vs 10.5/9.9/10.4, fwd+bwd 35.2/30.8/33.8 vs 33.7/28.8/34.9;
#   RNN fwd 4.57/3.59/4.07 vs 4.17/3.54/4.24, fwd+bwd 12.4/11.1/12.2 vs 11.9/11.0/12.0;
#   two later LSTM runs: fwd 16.70/12.94 vs 16.98/12.66, fwd+bwd 33.3/35.6 vs 32.7/35.3.
# So: LSTM a few % faster or level, GRU and RNN level (within this VM's noise).
RECURRENT_SPLIT_BATCH = True

# --- register-blocked GEMM tiles (kernels/cpu/_tile.py) ----------------------
# Shape of the register-blocked product tile: TILE_ROWS rows of C by TILE_VECTORS
# SIMD vectors of columns (AVX2: 8 float32 / 4 float64 per vector), the
# reduction cut into blocks of about TILE_DEPTH. One core, float32, min of 40
# runs of C(512x32) = A(512x257) @ B(257x32), B rows contiguous, against
# NumPy's OpenBLAS on the same call (which repacks A every call):
#   6x2: 77-90 vs 81-82 GFLOP/s (3 runs); 4x2: 87.6 vs 81.4; 3x4: 45 (spills: 12 acc + 4 B
#   + 1 broadcast > 16 ymm); 8x1: 46 (one B vector per 8 broadcasts);
#   depth 64 / 128 / 256: 60-70 / 64-78 / 77-86 (separate runs, +-10% noise).
# The tile is FMA-bound (6x2: 8 loads per 12 FMAs, assembly checked).
TILE_ROWS = 6
TILE_VECTORS = 2
TILE_DEPTH = 256

# --- CUDA (kernels/cuda/*.py) -------------------------------------------------
# Launch configuration of the numba.cuda kernels. Except the recurrent one,
# these were written without a GPU and are the usual starting points (warp
# multiples, 16x16 shared-memory tiles = 2 KiB float32 per operand tile);
# `bash bench/gpu.sh` / `fastml bench` on a GPU is how to retune them.
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
# Most blocks of the first pass of a grid-stride reduction over a whole array
# (gradient norms for clip_grad_norm_): each leaves one partial, and a second
# one-block pass adds the partials. Not measured; large enough to fill a GPU.
CUDA_REDUCE_MAX_BLOCKS = 1024
# Square tile edge of the shared-memory GEMM (linear, recurrent projections)
# and of the implicit-GEMM conv2d (weight tile x virtual im2col tile).
CUDA_GEMM_TILE = 16
# Threads per block of the recurrent time loop (one block per sequence, the
# whole sequence in one launch): each thread takes gate rows g, g + threads,
# ... of the hidden projection, and state elements j, j + threads, ... of the
# gate arithmetic. Measured on an H100 (fastml bench shapes, forward ms,
# B32 T50 I128 H256 / B1 T200 I32 H64):
#   128: RNN 3.10/2.06, LSTM 8.80/3.33, GRU 6.91/3.45
#   256: RNN 2.50/2.05, LSTM 5.77/3.41, GRU 5.46/2.29
#   512: RNN 2.45/2.08, LSTM 4.78/2.71, GRU 3.95/2.33
#   1024: does not launch (too many registers per block).
# 256 is what the CUDA test suite passed with on the H100 in both float32 and
# float64; 512 was timed in float32 only, and the float64 kernels use more
# registers per thread, so 512 waits for a GPU run that checks both.
CUDA_RECURRENT_THREADS = 256
# Tried and reverted, fifth session: the time loop with the sequence's state and hidden
# projection in (dynamic) shared memory instead of global memory. H100, forward ms with the
# inputs on the device, median of 20, global / shared: RNN B1 T200 1.37 / 1.26, B32 T50
# 1.66 / 1.82; LSTM 1.91 / 1.84, 4.60 / 5.46; GRU 1.61 / 3.49, 3.81 / 4.59. A tiny
# sequence (T=4) takes ~0.65 ms either way: the call's fixed cost (allocations, the
# input-projection GEMM, the W_hh transpose, launches) dominates B1.
# conv2d forward: the direct kernel (one thread per output pixel, the output
# channel's whole (C/groups, R, S) filter staged in shared memory) runs while
# that filter has at most this many taps; larger filters (many input
# channels) use the implicit-GEMM kernel, whose reduction is tiled instead.
CUDA_CONV_DIRECT_MAX_TAPS = 256
# Output pixels per block of the direct conv2d kernel.
CUDA_CONV_DIRECT_THREADS = 128
# conv2d forward's implicit GEMM: blocks of CUDA_CONV_BLOCK output channels by
# CUDA_CONV_BLOCK output positions, 16 x 16 threads each holding a register tile of
# (BLOCK/16)^2 sums, the reduction staged CUDA_CONV_DEPTH taps at a time. Fifth
# session; it replaced a 16 x 16 shared-memory tile with one output per thread and
# divisions per gathered element (~1.3 TFLOP/s on the H100: conv c N=256 15.2 ms,
# d 7.8, against cuDNN's 0.49 / 0.26). H100, float32, ms (median of 10), block x depth:
#   conv c N=256: 64x8 3.46, 64x16 2.21, 128x8 3.43, 32x8 3.90, 128x16 4.62 (cuDNN 0.58)
#   conv d N=256: 64x8 1.23, 64x16 1.25, 128x8 1.20, 32x8 2.07, 128x16 1.71 (cuDNN 0.29)
#   conv c N=32:  64x8 0.55, 64x16 0.49, 128x8 0.65, 32x8 0.72, 128x16 1.01 (cuDNN 0.32)
CUDA_CONV_BLOCK = 64
CUDA_CONV_DEPTH = 16
