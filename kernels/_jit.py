"""The Numba decorator every CPU kernel uses: on-disk cache, its location and recovery, launch guard.

Cache. Kernels compile on first use (lazily, per dtype signature) and are
cached on disk (``cache=True``). Numba writes its cache next to the source file
when it can, else to ``NUMBA_CACHE_DIR``. For a read-only install with no
``NUMBA_CACHE_DIR`` set we point Numba at a per-user temp dir, so caching
keeps working instead of failing with "no locator available" (a folder of
this user's that nobody else can write: cache files are pickles). Numba itself
raises (``EOFError``, ``UnpicklingError``) when an index (``.nbi``) or data
(``.nbc``) file is truncated or corrupt, and then can't save either (saving
reads the index first); :class:`_RecoveringCache` discards such a file,
recompiles and warns once per process. An entry is keyed on a digest of every
kernel source file as well (:func:`sources_digest`): a kernel's cached code
includes the helpers it calls from other files, and Numba itself only checks
the kernel's own file. Cache files are written to a temporary
name and renamed (Numba's ``_open_for_write``), so processes compiling the same
kernels at once never see each other's half-written files.

Threads. fastml may be called from many Python threads at once (kernels release
the GIL, ``nogil=True``). Numba's ``tbb`` and ``omp`` threading layers accept
concurrent parallel launches; ``workqueue`` (the fallback when neither TBB nor
OpenMP loads, or ``NUMBA_THREADING_LAYER=workqueue``) aborts the whole process
("Concurrent access has been detected"). So every ``parallel=True`` kernel is
launched through :class:`_GuardedKernel`, which under ``workqueue`` takes one
process-wide lock around the launch (parallel kernels then run one at a time;
serial kernels still run concurrently) and costs one flag test otherwise.
``fastml info`` reports the layer and which of the two applies.
"""
from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import threading
import warnings

import numba
import numba.core.dispatcher
from numba.core import config as numba_config
from numba.core.caching import FunctionCache

_KERNEL_DIR = os.path.dirname(os.path.abspath(__file__))


def _writable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".fastml-probe-", delete=True):
            pass
        return True
    except OSError:
        return False


def _private_dir(path: str) -> bool:
    """``path`` is (or now is) a real directory of this user's that nobody else can write to."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode):
        return False
    if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
        return False
    return _writable(path)


def configure_cache() -> str:
    """Make sure Numba has a writable cache directory; return where caches go."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        numba_config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
        return numba_config.CACHE_DIR
    if numba_config.CACHE_DIR:
        return numba_config.CACHE_DIR
    if _writable(os.path.join(_KERNEL_DIR, "cpu", "__pycache__")):
        return os.path.join(_KERNEL_DIR, "<backend>", "__pycache__")
    fallback = os.path.join(tempfile.gettempdir(), f"fastml-numba-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}")
    if not _private_dir(fallback):
        # Cache files are pickles: never load them from a folder someone else could have written.
        fallback = tempfile.mkdtemp(prefix="fastml-numba-cache-")
    numba_config.CACHE_DIR = fallback
    return fallback


CACHE_DIR = configure_cache()


_warned: set = set()
_warn_lock = threading.Lock()


def _warn_once(kind: str, message: str) -> None:
    with _warn_lock:
        if kind in _warned:
            return
        _warned.add(kind)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


_sources_digest: str | None = None


def digest_folder(folder: str) -> str:
    """SHA-256 of every ``.py`` file below ``folder``: their relative paths and contents."""
    digest = hashlib.sha256()
    for root, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                digest.update(os.path.relpath(path, folder).replace(os.sep, "/").encode() + b"\0")
                with open(path, "rb") as source:
                    digest.update(source.read())
    return digest.hexdigest()


def sources_digest() -> str:
    """:func:`digest_folder` of the kernels, once per process: part of every cached kernel's key.

    A kernel's cache entry holds the code of the helpers it calls from other
    files (conv.py's tiled forward inlines _tile.py's tiles), while Numba
    checks only the kernel's own file. Without it, editing _tile.py in a
    checkout left conv.py's cached kernels running the old tiles (an
    installed release rewrites every file, so only a checkout being edited
    met this).
    """
    global _sources_digest
    if _sources_digest is None:
        _sources_digest = digest_folder(_KERNEL_DIR)
    return _sources_digest


class _RecoveringCache(FunctionCache):
    """Numba's per-function disk cache, but a corrupt cache file means "recompile", not a crash, and an entry
    is only reused while every kernel source file is unchanged (:func:`sources_digest`).

    A file that fails to load (truncated, garbage, written by a crashed process)
    is removed together with the function's index, the kernel is compiled as if
    nothing was cached and saved afresh; the first time this happens in a
    process a RuntimeWarning names the file. A cache that can't be written
    (full disk, read-only ``NUMBA_CACHE_DIR``) warns once and the compiled
    kernel is simply not saved.
    """

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except Exception as exc:  # noqa: BLE001 - pickle/LLVM errors of every kind mean "corrupt"
            _warn_once("corrupt", f"fastml: the Numba cache file {self._corrupt_file(sig, target_context)!r} was "
                                  f"corrupt ({type(exc).__name__}: {exc}); recompiling. Further corrupt cache files "
                                  f"are recompiled without a warning.")
            self._discard()
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception as first:  # noqa: BLE001
            self._discard()  # most likely a corrupt index, which saving reads first
            try:
                super().save_overload(sig, data)
            except Exception as exc:  # noqa: BLE001
                _warn_once("unsaved", f"fastml: could not write the Numba cache in {self.cache_path!r} "
                                      f"({type(exc).__name__}: {exc}; first {type(first).__name__}); kernels are "
                                      f"compiled in every new process. Set NUMBA_CACHE_DIR to a writable folder.")

    def _index_key(self, sig, codegen):
        """Numba's key (signature, target, the function's bytecode and closure) and the kernel sources' digest."""
        return (*super()._index_key(sig, codegen), sources_digest())

    def _corrupt_file(self, sig, target_context) -> str:
        """The index if it doesn't load, else the data file it lists for ``sig``."""
        cache_file = self._cache_file
        try:
            name = cache_file._load_index().get(self._index_key(sig, target_context.codegen()))
        except Exception:  # noqa: BLE001
            return cache_file._index_path
        return cache_file._data_path(name) if name else cache_file._index_path

    def _discard(self):
        """Remove this function's index: its stale entries are forgotten and data files overwritten."""
        try:
            os.unlink(self._cache_file._index_path)
        except OSError:
            pass


def _enable_cache(dispatcher) -> None:
    try:
        dispatcher._cache = _RecoveringCache(dispatcher.py_func)
    except RuntimeError as exc:  # "cannot cache function ...: no locator available"
        _warn_once("unsaved", f"fastml: Numba kernels can't be cached ({exc}); they are compiled in every new "
                              f"process. Set NUMBA_CACHE_DIR to a writable folder.")


# --- parallel launches and the threading layer ---------------------------------------------------

_LAUNCH_LOCK = threading.Lock()
_serialise_launches: bool | None = None  # decided at the first parallel launch


def threading_layer() -> str:
    """The Numba threading layer parallel kernels run on (``tbb``, ``omp`` or ``workqueue``).

    Numba picks it when its thread pool starts; this starts the pool if no
    parallel kernel has run yet (``numba.get_num_threads`` does), so the answer
    is what the kernels will use.
    """
    numba.get_num_threads()
    return numba.threading_layer()


def launches_serialised() -> bool:
    """True when parallel kernel launches take turns: the ``workqueue`` layer is not thread-safe."""
    global _serialise_launches
    if _serialise_launches is None:
        _serialise_launches = threading_layer() == "workqueue"
    return _serialise_launches


class _GuardedKernel:
    """A ``parallel=True`` dispatcher, launched under a process-wide lock when the layer is ``workqueue``.

    Everything else (``py_func``, ``stats``, ``signatures``, ...) is the dispatcher's.
    A guarded kernel can't be called from other ``@njit`` code (no parallel
    kernel is): call ``.dispatcher`` there.
    """

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.__wrapped__ = dispatcher
        self.__name__ = dispatcher.__name__
        self.__qualname__ = dispatcher.__qualname__
        self.__doc__ = dispatcher.__doc__

    def __call__(self, *args):
        if _serialise_launches is False or (_serialise_launches is None and not launches_serialised()):
            return self.dispatcher(*args)
        with _LAUNCH_LOCK:
            return self.dispatcher(*args)

    def __getattr__(self, name):
        if name == "dispatcher" or name.startswith("__"):  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dispatcher, name)

    def __repr__(self):
        return f"<fastml guarded parallel kernel {self.__qualname__}>"


def njit(*args, parallel: bool = False, **options):
    """``numba.njit`` with fastml's defaults: on-disk cache, NumPy error model, no fastmath.

    fastmath flags that assume no NaN/Inf would let NaN vanish from max pooling
    and activations, so kernels opt in only to ``contract``/``reassoc`` where a
    measurement justified it (see ``kernels/config.py``). The disk cache is
    :class:`_RecoveringCache`; ``parallel=True`` kernels come back wrapped in
    :class:`_GuardedKernel` (see the module docstring).
    """
    cache = options.pop("cache", True)
    options.setdefault("error_model", "numpy")
    options.setdefault("nogil", True)
    decorator = numba.njit(parallel=parallel, cache=False, **options)

    def make(func):
        dispatcher = decorator(func)
        if not isinstance(dispatcher, numba.core.dispatcher.Dispatcher):  # NUMBA_DISABLE_JIT=1: plain Python
            return dispatcher
        if cache:
            _enable_cache(dispatcher)
        return _GuardedKernel(dispatcher) if parallel else dispatcher

    if args and callable(args[0]):
        return make(args[0])
    return make
