"""A register-blocked GEMM for short, wide-enough products: ``C (+)= A @ B`` with few columns.

What it is for: the recurrent kernels' per-step products, ``[W_hh | b] @ [h; 1]``
with N = batch columns (32 in the benchmarks), run by every prange worker on
its own gate rows. OpenBLAS repacks the whole weight block on every such call
(it can't know the weights don't change between steps), which costs as much
as a third of the product; this kernel reads A and B where they are.

How: :func:`gemm_nn` cuts C into tiles of ``TILE_ROWS`` rows by
``TILE_VECTORS`` SIMD vectors of columns and the reduction into blocks of
``TILE_DEPTH`` (so a block of B stays in L1 while every row tile passes over
it). One tile is one call of a small intrinsic written in LLVM IR: its
``TILE_ROWS * TILE_VECTORS`` accumulators are vector SSA values (an alloca
each, promoted to registers by LLVM's mem2reg), and per reduction step it
loads the B row's vectors once, broadcasts each A element and issues one
``llvm.fmuladd`` per accumulator (an FMA where the CPU has one). Numba can't
express this itself: a Numba loop that accumulates into an array reloads and
stores the accumulators on every step (LLVM can't prove C doesn't alias A or
B), which is what capped the earlier kernels at ~40 GFLOP/s per core.

6 rows x 2 vectors (16 float32 / 8 float64 columns) is the classic AVX2
shape: 12 accumulators + 2 B vectors + 1 broadcast = 15 of the 16 ymm
registers, 8 loads per 12 FMAs. Measurements in ``kernels/config.py``.
Columns not covered by whole tiles take 1-vector tiles, then a scalar loop.
"""
from __future__ import annotations

import threading

import llvmlite.binding
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .. import config
from .._jit import njit

# Bytes per SIMD register the tiles are shaped for (AVX2: 32).
VECTOR_BYTES = 32


def _lanes(dtype) -> int:
    return VECTOR_BYTES * 8 // dtype.bitwidth


class _Emitter:
    """The LLVM IR every tile shares: ``rows x vectors`` vector accumulators (allocas, promoted to
    registers by mem2reg), the broadcast-multiply-add step, and the final store of the sums."""

    def __init__(self, context, builder, array, rows, vectors):
        self.context, self.builder, self.array = context, builder, array
        self.rows, self.vectors = rows, vectors
        self.lanes = _lanes(array.dtype)
        self.vector = ir.VectorType(context.get_data_type(array.dtype), self.lanes)
        self.align = array.dtype.bitwidth // 8
        self.intp = context.get_value_type(types.intp)
        self.fmuladd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(self.vector, [self.vector] * 3),
                                                      f"llvm.fmuladd.v{self.lanes}f{array.dtype.bitwidth}")
        self.acc = [[cgutils.alloca_once(builder, self.vector) for _ in range(vectors)] for _ in range(rows)]
        for row in self.acc:
            for slot in row:
                builder.store(ir.Constant(self.vector, None), slot)

    def _broadcast(self, scalar):
        undefined = ir.Constant(self.vector, ir.Undefined)
        splat = ir.Constant(ir.VectorType(ir.IntType(32), self.lanes), None)
        return self.builder.shuffle_vector(
            self.builder.insert_element(undefined, scalar, ir.Constant(ir.IntType(32), 0)), undefined, splat)

    def start_from(self, row_ptr):
        """acc[i][v] = row_ptr[i] in every lane (the conv tiles start from the bias)."""
        for i in range(self.rows):
            value = self._broadcast(self.builder.load(self.builder.gep(row_ptr, [self.const(i)])))
            for slot in self.acc[i]:
                self.builder.store(value, slot)

    def const(self, value):
        return ir.Constant(self.intp, value)

    def data(self, value):
        """Pointer to the first element of an array argument."""
        return self.context.make_array(self.array)(self.context, self.builder, value).data

    def _vector_ptr(self, base, offset):
        return self.builder.bitcast(self.builder.gep(base, [offset]), self.vector.as_pointer())

    def multiply_add(self, a_ptr, a_index, b_ptr, b_offset):
        """acc[i][v] += a[a_index(i)] * b[b_offset + v*lanes : ... + lanes] for every row i and vector v."""
        builder, lanes = self.builder, self.lanes
        b_vectors = [builder.load(self._vector_ptr(b_ptr, builder.add(b_offset, self.const(v * lanes))),
                                  align=self.align) for v in range(self.vectors)]
        for i in range(self.rows):
            broadcast = self._broadcast(builder.load(builder.gep(a_ptr, [a_index(i)])))
            for v in range(self.vectors):
                slot = self.acc[i][v]
                builder.store(builder.call(self.fmuladd, [broadcast, b_vectors[v], builder.load(slot)]), slot)

    def prefetch(self, c_ptr, ldc):
        """Prefetch (for writing) the cache lines of the tile's C rows: their first and last elements.

        Issued before the reduction, so an accumulating tile's loads of C at the end hit L1: the
        recurrent kernels' gate blocks were written long before (the input projections of every
        step) and a miss there stalled each tile (~30 us of a 125 us step at B16 H256). The conv
        tiles store to output lines not yet in cache: prefetched, conv b (27 taps a tile, 8 MB of
        output) ran 1.06-1.22 ms against 1.27-1.61 without, four interleaved pairs of runs."""
        builder = self.builder
        i8_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8_ptr, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        last = self.vectors * self.lanes - 1
        for i in range(self.rows):
            c_row = builder.mul(self.const(i), ldc)
            for offset in (0, last):
                target = builder.bitcast(builder.gep(c_ptr, [builder.add(c_row, self.const(offset))]), i8_ptr)
                builder.call(fn, [target, ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])

    def store(self, c_ptr, ldc, accumulate=None):
        """c[i*ldc + v*lanes ...] = acc[i][v] (+ what c held, where the i1 ``accumulate`` is true)."""
        builder = self.builder
        for i in range(self.rows):
            c_row = builder.mul(self.const(i), ldc)
            for v in range(self.vectors):
                target = self._vector_ptr(c_ptr, builder.add(c_row, self.const(v * self.lanes)))
                slot = self.acc[i][v]
                if accumulate is not None:
                    with builder.if_then(accumulate):
                        builder.store(builder.fadd(builder.load(slot), builder.load(target, align=self.align)), slot)
                builder.store(builder.load(slot), target, align=self.align)


def _switch(builder, value, cases, emit_case, default=None):
    """Emit ``emit_case(k)`` for every k in ``cases``, one of them picked at run time by the integer ``value``
    (an LLVM switch); other values run ``default()``, or the first case where there is none (the callers'
    bounds keep the value among the cases). One intrinsic thus carries every variant of a tile, each
    compiled for its own constant row count or kernel width."""
    end = builder.append_basic_block("switch.end")
    blocks = [builder.append_basic_block(f"switch.case{k}") for k in cases]
    fallback = builder.append_basic_block("switch.default") if default is not None else blocks[0]
    switch = builder.switch(value, fallback)
    for k, block in zip(cases, blocks):
        switch.add_case(ir.Constant(value.type, k), block)
        with builder.goto_block(block):
            emit_case(k)
            builder.branch(end)
    if default is not None:
        with builder.goto_block(fallback):
            default()
            builder.branch(end)
    builder.position_at_end(end)


def _make_tile(vectors: int, max_rows: int):
    """Intrinsic ``tile(rows, depth, a, a_row, a_col, b, ldb, c, ldc, accumulate)``: c[rows, vectors*lanes] (+)= a @ b.

    rows 1..max_rows, each its own register-blocked variant. a, b, c: 1-D
    float arrays starting at the operands' first elements. Element (i, k) of
    A is ``a[i*a_row + k*a_col]`` (so A may be a transposed view); B and C
    are row-major with row strides ldb, ldc. Bounds are the caller's.
    """

    @intrinsic
    def tile(typingctx, rows, depth, a, a_row, a_col, b, ldb, c, ldc, accumulate):
        if not (isinstance(a, types.Array) and a.dtype in (types.float32, types.float64)
                and b == a and c == a):
            return None
        sig = types.void(types.intp, types.intp, a, types.intp, types.intp, a, types.intp, a, types.intp,
                         types.boolean)

        def codegen(context, builder, signature, args):
            rows, depth, a, a_row, a_col, b, ldb, c, ldc, accumulate = args

            def variant(count):
                emit = _Emitter(context, builder, signature.args[2], count, vectors)
                a_ptr, b_ptr, c_ptr = emit.data(a), emit.data(b), emit.data(c)
                emit.prefetch(c_ptr, ldc)
                with cgutils.for_range(builder, depth) as loop:
                    a_k = builder.mul(loop.index, a_col)
                    emit.multiply_add(a_ptr, lambda i: builder.add(builder.mul(emit.const(i), a_row), a_k),
                                      b_ptr, builder.mul(loop.index, ldb))
                emit.store(c_ptr, ldc, accumulate)

            _switch(builder, rows, range(1, max_rows + 1), variant)
            return context.get_dummy_value()

        return sig, codegen

    return tile


TILE_ROWS = config.TILE_ROWS
TILE_VECTORS = config.TILE_VECTORS
if not 1 <= TILE_ROWS <= 6 or not 1 <= TILE_VECTORS <= 4:
    raise ValueError(f"kernels.config: TILE_ROWS must be 1..6 and TILE_VECTORS 1..4, "
                     f"got {TILE_ROWS} and {TILE_VECTORS}")
# TILE_ROWS (or fewer) rows by TILE_VECTORS vectors, or by one vector (the columns wide tiles leave)
_wide = _make_tile(TILE_VECTORS, TILE_ROWS)
_narrow = _make_tile(1, TILE_ROWS)


@njit
def _row_blocks(rows):
    """Start of each block of at most TILE_ROWS rows; a short last block is evened out with the one before
    (32 rows: 6, 6, 6, 6, 4, 4 instead of ..., 6, 2: two accumulators per vector can't hide FMA latency)."""
    count = (rows + TILE_ROWS - 1) // TILE_ROWS
    starts = np.empty(count + 1, np.int64)
    for b in range(count):
        starts[b] = b * TILE_ROWS
    starts[count] = rows
    if count >= 2 and rows % TILE_ROWS != 0:
        tail = TILE_ROWS + rows % TILE_ROWS  # the last two blocks' rows
        starts[count - 1] = rows - tail // 2
    return starts


@njit
def _lanes_of(a):
    return VECTOR_BYTES // a.itemsize


@njit
def gemm_small(m, n, k, a, a_row, a_col, b, ldb, c, ldc, accumulate):
    """``C(m, n) = A(m, k) @ B(k, n)`` (``+=`` with accumulate); a, b, c are 1-D views at the operands.

    A's element (i, k) is ``a[i*a_row + k*a_col]`` (row-major: a_row = lda,
    a_col = 1; a transposed row-major matrix: a_row = 1, a_col = its lda); B
    and C are row-major with row strides ldb and ldc. The caller guarantees
    the extents (the largest index of each operand is inside its view).
    """
    lanes = _lanes_of(a)
    wide = TILE_VECTORS * lanes
    blocks = (k + config.TILE_DEPTH - 1) // config.TILE_DEPTH
    depth_block = (k + blocks - 1) // blocks if blocks > 0 else 0  # even blocks: 257 -> 129 + 128
    wide_cols = n - n % wide
    vector_cols = n - n % lanes
    if k == 0:
        if not accumulate:
            for i in range(m):
                for j in range(n):
                    c[i * ldc + j] = 0
        return
    starts = _row_blocks(m)
    for k0 in range(0, k, depth_block):
        kc = min(depth_block, k - k0)
        add = accumulate or k0 > 0
        a0 = a[k0 * a_col:]
        j0 = 0
        while j0 < vector_cols:  # wide tiles, then one-vector tiles
            is_wide = j0 < wide_cols
            b0 = b[k0 * ldb + j0:]
            for block in range(starts.shape[0] - 1):
                i0 = starts[block]
                rows = starts[block + 1] - i0
                if is_wide:
                    _wide(rows, kc, a0[i0 * a_row:], a_row, a_col, b0, ldb, c[i0 * ldc + j0:], ldc, add)
                else:
                    _narrow(rows, kc, a0[i0 * a_row:], a_row, a_col, b0, ldb, c[i0 * ldc + j0:], ldc, add)
            j0 += wide if is_wide else lanes
        if vector_cols < n:
            for i in range(m):
                for j in range(vector_cols, n):
                    total = c[i * ldc + j] if add else c.dtype.type(0)
                    for kk in range(k0, k0 + kc):
                        total += a[i * a_row + kk * a_col] * b[kk * ldb + j]
                    c[i * ldc + j] = total


# --- one compiled copy, called by name ----------------------------------------------------------
# Numba links a callee's LLVM IR into every caller's library and re-optimises and re-codegens it
# there, so the recurrent kernels calling gemm_small through a few helper levels each paid its
# compile time again (a cold fastml.warmup() went from 86 to 166 s). Instead gemm_small is compiled
# once per dtype as a C callback (cached on disk like the kernels), its address registered in the
# process's symbol table under a fixed name, and kernels call it as an external function: what
# _blas.py does for OpenBLAS, and cache=True keeps working (no address in the compiled code).
_SYMBOLS = {types.float32: "fastml_gemm_small_float32", types.float64: "fastml_gemm_small_float64"}
_registered: dict = {}
_register_lock = threading.Lock()


def _signature(dtype):
    ptr = types.CPointer(dtype)
    return types.void(types.intp, types.intp, types.intp, ptr, types.intp, types.intp, ptr, types.intp, ptr,
                      types.intp, types.boolean)


@njit
def _extent(rows, cols, row_stride, col_stride):
    """Elements from an operand's first to its last element, inclusive (0 when it is empty)."""
    if rows == 0 or cols == 0:
        return 0
    return (rows - 1) * row_stride + (cols - 1) * col_stride + 1


def _entry(m, n, k, a, a_row, a_col, b, ldb, c, ldc, accumulate):
    """gemm_small on raw pointers: the body of the registered C callbacks."""
    gemm_small(m, n, k, numba.carray(a, _extent(m, k, a_row, a_col)), a_row, a_col,
               numba.carray(b, _extent(k, n, ldb, 1)), ldb, numba.carray(c, _extent(m, n, ldc, 1)), ldc, accumulate)


def register(dtype) -> None:
    """Compile (or load) the C-callable gemm_small for ``dtype`` and register it by name; idempotent.

    Must run before any kernel calling :func:`gemm_small_external` on that
    dtype is compiled or loaded from the cache; the recurrent entry points
    call it first.
    """
    element = numba.from_dtype(np.dtype(dtype))
    symbol = _SYMBOLS[element]
    if symbol in _registered:
        return
    with _register_lock:
        if symbol not in _registered:
            compiled = numba.cfunc(_signature(element), cache=True)(_entry)
            llvmlite.binding.add_symbol(symbol, compiled.address)
            _registered[symbol] = compiled  # keeps the code alive


_EXTERNAL = {dtype: types.ExternalFunction(symbol, _signature(dtype)) for dtype, symbol in _SYMBOLS.items()}


def gemm_small_external(m, n, k, a, a_row, a_col, b, ldb, c, ldc, accumulate):
    """:func:`gemm_small`, as a call of its one registered compiled copy (see :func:`register`)."""


@overload(gemm_small_external)
def _gemm_small_external_impl(m, n, k, a, a_row, a_col, b, ldb, c, ldc, accumulate):
    call = _EXTERNAL[a.dtype]

    def impl(m, n, k, a, a_row, a_col, b, ldb, c, ldc, accumulate):
        if (a.size < _extent(m, k, a_row, a_col) or b.size < _extent(k, n, ldb, 1)
                or c.size < _extent(m, n, ldc, 1)):
            raise IndexError("gemm_small: an operand view is shorter than its extent")
        call(m, n, k, a.ctypes, a_row, a_col, b.ctypes, ldb, c.ctypes, ldc, accumulate)

    return impl


# --- convolution tiles: the reduction runs over (channel, kernel row, kernel column) -------------
def _make_conv_tile(vectors: int, max_rows: int):
    """Intrinsic ``conv(rows, kind, channels, kh, kw, a, a_row, b, b_channel, b_row, b_phase, sw, c, ldc, bias,
    repeat, b_step, c_step)``.

    c[i*ldc + q] = bias[i] + sum over (ch, r, s) of a[i*a_row + (ch*kh + r)*kw + s]
    * b[ch*b_channel + r*b_row + (s % sw)*b_phase + s // sw + q] for i < rows
    (1..max_rows), q < vectors*lanes: ``rows`` output channels of a
    convolution at ``vectors*lanes`` adjacent output positions (``b`` is the
    (padded) input at the first one's top-left tap, one plane per channel).
    With column stride sw > 1 each channel's plane is split into its sw
    column phases, b_phase elements apart (column w of the padded input is
    element w // sw of phase w % sw), so adjacent outputs still read adjacent
    elements; with sw == 1, b_phase is unused. Every accumulator stays in a
    register for the whole reduction. ``kind`` (:func:`tap_kind` of kh, kw,
    sw) picks the variant: 3x3 kernels at column stride 1 or 2 and 5x5 at
    stride 1 unroll every tap of a channel, each at a constant offset from
    the channel's first (at stride 2 the middle column is b_phase away);
    other kernels loop over rows and columns at run time. The tile runs
    ``repeat`` times, b and c moving on by b_step and c_step elements each
    time (the same columns of the next output rows): one dispatch for them all.
    """

    @intrinsic
    def conv(typingctx, rows, kind, channels, kh, kw, a, a_row, b, b_channel, b_row, b_phase, sw, c, ldc, bias, repeat,
             b_step, c_step):
        if not (isinstance(a, types.Array) and a.dtype in (types.float32, types.float64)
                and b == a and c == a and bias == a):
            return None
        sig = types.void(types.intp, types.intp, types.intp, types.intp, types.intp, a, types.intp, a, types.intp,
                         types.intp, types.intp, types.intp, a, types.intp, a, types.intp, types.intp, types.intp)

        def codegen(context, builder, signature, args):
            (rows, kind, channels, kh, kw, a, a_row, b, b_channel, b_row, b_phase, sw, c, ldc, bias, repeat, b_step,
             c_step) = args

            def variant(count, shape):
                emit = _Emitter(context, builder, signature.args[5], count, vectors)
                a_ptr, b_first, c_first, bias_ptr = emit.data(a), emit.data(b), emit.data(c), emit.data(bias)
                zero, one = emit.const(0), emit.const(1)

                def next_column(phase, step):
                    """(phase, step) of kernel column s + 1 from those of s: s % sw and s // sw, no division."""
                    wrap = builder.icmp_signed("==", builder.add(phase, one), sw)
                    return (builder.select(wrap, zero, builder.add(phase, one)),
                            builder.add(step, builder.zext(wrap, emit.intp)))

                def column_offset(phase, step):
                    return builder.add(builder.mul(phase, b_phase), step)

                square = _SQUARE.get(shape)  # (side, column stride): every tap unrolled at a fixed column offset
                if square is not None:
                    side, stride = square
                    columns = [column_offset(emit.const(s % stride), emit.const(s // stride)) for s in range(side)]
                with cgutils.for_range(builder, repeat) as by_repeat:
                    b_ptr = builder.gep(b_first, [builder.mul(by_repeat.index, b_step)])
                    c_ptr = builder.gep(c_first, [builder.mul(by_repeat.index, c_step)])

                    def tap(k, offset):
                        emit.multiply_add(a_ptr, lambda i: builder.add(builder.mul(emit.const(i), a_row), k), b_ptr,
                                          offset)

                    emit.prefetch(c_ptr, ldc)
                    emit.start_from(bias_ptr)
                    with cgutils.for_range(builder, channels) as by_channel:
                        ch = by_channel.index
                        if square is not None:
                            b_channel_at = builder.mul(ch, b_channel)
                            k_channel = builder.mul(ch, emit.const(side * side))
                            for r in range(side):
                                b_base = builder.add(b_channel_at, builder.mul(emit.const(r), b_row))
                                for s in range(side):
                                    tap(builder.add(k_channel, emit.const(r * side + s)), builder.add(b_base, columns[s]))
                        else:
                            with cgutils.for_range(builder, kh) as by_row:
                                r = by_row.index
                                b_base = builder.add(builder.mul(ch, b_channel), builder.mul(r, b_row))
                                k_base = builder.mul(builder.add(builder.mul(ch, kh), r), kw)
                                phase_at = cgutils.alloca_once_value(builder, zero)
                                step_at = cgutils.alloca_once_value(builder, zero)
                                with cgutils.for_range(builder, kw) as by_column:
                                    phase, step = builder.load(phase_at), builder.load(step_at)
                                    tap(builder.add(k_base, by_column.index),
                                        builder.add(b_base, column_offset(phase, step)))
                                    phase, step = next_column(phase, step)
                                    builder.store(phase, phase_at)
                                    builder.store(step, step_at)
                    emit.store(c_ptr, ldc)

            def by_rows(shape):
                _switch(builder, rows, range(1, max_rows + 1), lambda count: variant(count, shape))

            _switch(builder, kind, _KINDS, by_rows)
            return context.get_dummy_value()

        return sig, codegen

    return conv


# The conv tiles' variants by kernel shape (measurements in kernels/config.py, "conv tile variants"):
# 3x3 kernels at column stride 1 or 2 and 5x5 at stride 1 with every tap of a channel unrolled; anything
# else with both loops at run time.
_KIND_ANY, _KIND_3X3, _KIND_3X3_S2, _KIND_5X5 = 0, 1, 2, 3
_KINDS = (_KIND_ANY, _KIND_3X3, _KIND_3X3_S2, _KIND_5X5)
_SQUARE = {_KIND_3X3: (3, 1), _KIND_3X3_S2: (3, 2), _KIND_5X5: (5, 1)}  # kind: (kernel side, column stride)


@njit
def tap_kind(kh, kw, sw):
    """The conv tiles' variant (one of _KINDS) for kernel height kh, width kw and column stride sw."""
    if kh == 3 and kw == 3 and sw <= 2:
        return _KIND_3X3 if sw == 1 else _KIND_3X3_S2
    if kh == 5 and kw == 5 and sw == 1:
        return _KIND_5X5
    return _KIND_ANY


# Two tile shapes: "wide" (TILE_ROWS output channels by TILE_VECTORS vectors, 6 x 16 float32 columns) and
# "long" (CONV_LONG_ROWS rows by three vectors, 3 x 24: rows of 24 or 8*(2k+1) outputs need no
# overlapping tile); a block count that doesn't divide evenly ends in long blocks one row taller.
LONG_VECTORS = 3
LONG_ROWS = config.CONV_LONG_ROWS
if not 1 <= LONG_ROWS <= 3:
    raise ValueError(f"kernels.config: CONV_LONG_ROWS must be 1..3, got {LONG_ROWS}")
_conv_wide = _make_conv_tile(TILE_VECTORS, TILE_ROWS)
_conv_long = _make_conv_tile(LONG_VECTORS, LONG_ROWS + 1)


@njit
def _long_blocks(rows):
    """Start of each block of LONG_ROWS rows. A remainder adds one row to each of the last blocks (32
    rows in blocks of 3: eight of 3, two of 4), or where there are too few blocks for that is a short
    last block (5 rows: 3, 2)."""
    count, extra = rows // LONG_ROWS, rows % LONG_ROWS
    spread = extra <= count
    blocks = count if spread else count + 1
    starts = np.empty(blocks + 1, np.int64)
    start = 0
    for b in range(blocks):
        starts[b] = start
        start += LONG_ROWS + (1 if spread and b >= count - extra else 0)
    starts[blocks] = rows
    return starts


@njit
def conv_width_multiple(x):
    """Columns per wide conv tile (``TILE_VECTORS`` vectors of x's dtype): the flat layout's widths are
    multiples, and :func:`conv_rows` needs output rows at least this wide."""
    return TILE_VECTORS * _lanes_of(x)


@njit
def conv_tiles(k_out, width, channels, kh, kw, weight, xp, b_channel, b_row, bias, ext):
    """ext[k, q] = bias[k] + sum over (c, r, s) of weight[k, c, r, s] * xp[c*b_channel + r*b_row + s + q], q < width.

    The flat ("padded-width") layout, for output rows narrower than a tile:
    weight (k_out, channels*kh*kw) and ext (k_out, >= width) are 2-D C
    arrays, xp the 1-D padded input; ``width`` a multiple of
    :func:`conv_width_multiple`, and xp long enough for the last tap of the
    last column (the caller's padding). Column blocks outside, channel
    blocks inside: one block of input columns serves every output channel
    from L1.
    """
    wide = conv_width_multiple(xp)
    taps = weight.shape[1]
    flat_w, ldc = weight.ravel(), ext.shape[1]
    flat_out = ext.ravel()
    starts = _row_blocks(k_out)
    kind = tap_kind(kh, kw, 1)
    for j0 in range(0, width, wide):
        b0 = xp[j0:]
        for block in range(starts.shape[0] - 1):
            i0 = starts[block]
            _conv_wide(starts[block + 1] - i0, kind, channels, kh, kw, flat_w[i0 * taps:], taps, b0, b_channel, b_row, 0,
                       1, flat_out[i0 * ldc + j0:], ldc, bias[i0:], 1, 0, 0)


@njit
def _row_segments(ow, lanes, use_long):
    """(start column, is long) of the tiles covering an output row of ``ow`` >= 2*lanes columns: one long
    tile first when ow is an odd number (>= 3) of vectors, wide tiles after it, and where ow is no
    multiple of a wide tile the last wide tile shifted left to end at ow (recomputing a few columns)."""
    wide = TILE_VECTORS * lanes
    long_first = use_long and ow % lanes == 0 and (ow // lanes) % 2 == 1 and ow >= LONG_VECTORS * lanes and TILE_VECTORS == 2
    first = LONG_VECTORS * lanes if long_first else 0
    count = (1 if long_first else 0) + (ow - first + wide - 1) // wide
    starts = np.empty(count, np.int64)
    long = np.zeros(count, np.bool_)
    t = 0
    if long_first:
        starts[0], long[0] = 0, True
        t = 1
    for x0 in range(first, ow, wide):
        starts[t] = min(x0, ow - wide)
        t += 1
    return starts, long


@njit
def conv_rows(k_out, oh, ow, channels, kh, kw, weight, xp, b_channel, b_row, bias, out, use_long=True, sh=1, sw=1,
              b_phase=0, ldc=0, rows_per_call=1):
    """out[k*oh*ow + y*ow + x] = bias[k] + sum over (c, r, s) of weight[k, c*kh*kw + r*kw + s] * xp[c*b_channel
    + (y*sh + r)*b_row + (s % sw)*b_phase + x + s // sw], for y < oh and x < ow >= :func:`conv_width_multiple`.

    Tiles run along each output row and store straight into the (k_out, oh,
    ow) output block ``out`` (1-D, C order): no garbage columns, no copy out.
    xp is the (padded) input, one plane of b_channel elements per channel
    and rows b_row apart; with column stride sw > 1 a channel's plane holds
    its sw column phases b_phase elements apart (padded column w at element
    w // sw of phase w % sw), so each tap still reads adjacent elements. No
    tap reads past element ``ow - 1 + (kw - 1) // sw`` of its row (phase).
    ``ldc``: elements from one output channel's plane to the next, when
    ``out`` is a band of oh rows of taller planes (0: oh * ow). Segments
    outside, output-channel blocks inside: a segment's input columns serve
    every output channel from L1. Each tile call runs up to ``rows_per_call``
    output rows (the same columns of each), one after the other.
    """
    taps = weight.shape[1]
    flat_w = weight.ravel()
    ldc = ldc if ldc > 0 else oh * ow
    seg_starts, seg_long = _row_segments(ow, _lanes_of(xp), use_long)
    wide_blocks, long_blocks = _row_blocks(k_out), _long_blocks(k_out)
    kind = tap_kind(kh, kw, sw)
    for y in range(0, oh, rows_per_call):
        repeat = min(rows_per_call, oh - y)
        for seg in range(seg_starts.shape[0]):
            x0 = seg_starts[seg]
            b0, c0 = xp[y * sh * b_row + x0:], out[y * ow + x0:]
            if seg_long[seg]:
                for block in range(long_blocks.shape[0] - 1):
                    i0 = long_blocks[block]
                    _conv_long(long_blocks[block + 1] - i0, kind, channels, kh, kw, flat_w[i0 * taps:], taps, b0,
                               b_channel, b_row, b_phase, sw, c0[i0 * ldc:], ldc, bias[i0:], repeat, sh * b_row, ow)
            else:
                for block in range(wide_blocks.shape[0] - 1):
                    i0 = wide_blocks[block]
                    _conv_wide(wide_blocks[block + 1] - i0, kind, channels, kh, kw, flat_w[i0 * taps:], taps, b0,
                               b_channel, b_row, b_phase, sw, c0[i0 * ldc:], ldc, bias[i0:], repeat, sh * b_row, ow)
