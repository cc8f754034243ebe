"""exm from Python: file-backed numpy arrays and exm's runtime settings.

Start Python under exm (``exm python3 script.py``, or ``exm python3`` for a
prompt); large allocations then go to a file-backed arena without any code
change. This module lets the program itself take part:

    import multiprocessing
    import exm

    a = exm.zeros((2**28,))        # 2 GiB of float64 in a file, whatever the
                                   # threshold; reads as zeros, no RAM used yet
    a[:] = 1.0
    exm.lookup(a)                  # BlockInfo(path='/proc/self/fd/5', offset=..., size=...)
    exm.advise(a, "random")        # before scattered reads (also numpy's own arrays)
    with exm.child_mode("shared"):
        with multiprocessing.get_context("fork").Pool(4) as pool:
            ...                    # the workers write into the parent's arrays
    print(exm.stats().disk_reserved)

What there is:

- file-backed memory whatever the threshold: ``zeros``, ``empty`` (numpy
  arrays, freed when the array and every view of it are gone) and
  ``buffer`` (a writable memoryview, no numpy needed);
- questions about any object with the buffer protocol (numpy arrays,
  bytearray, memoryview, mmap): ``is_file_backed``, ``lookup``, ``advise``;
- the settings of the command line's option table, for this process and the
  children it forks from then on: ``threshold``, ``data_dir``,
  ``child_mode``, ``advice``, ``max_disk``. Called without an argument each
  returns the value; called with one it sets it and returns a ``Setting``,
  which as a context manager puts the previous value back at the end of the
  ``with`` block. ``set_threshold`` & co. set a value and return the previous
  one;
- ``stats()``, ``check()``, ``version()``, ``available()``.

How it reaches the library: through ctypes, in the process's global symbol
scope, so it always talks to the libexm that serves this process's malloc
(the one ``exm`` preloaded, or one named in LD_PRELOAD by hand) and never
loads a second copy. Importing never fails; outside exm ``available()`` is
False and every other function raises RuntimeError saying how to start
Python. A running interpreter cannot be moved under exm: the allocator has
to be there from the first malloc.

Errors: ``ValueError`` for a bad size, mode or shape, ``TypeError`` for an
argument of the wrong kind, ``MemoryError`` (``ExmMemoryError``, naming the
data directory and the reason: disk full, disk cap) when the arena cannot
serve a request, ``OSError`` when the library refuses a setting (e.g. a data
directory that is not a writable directory).
"""

import ctypes
import errno
import gc
import math
import operator
import os
import re
import threading
import warnings
import weakref
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Optional, Sequence, Tuple, Union, overload

from . import _ffi

if TYPE_CHECKING:  # numpy is optional: only empty() and zeros() need it
    import numpy


__version__ = "0.1.0"

__all__ = [
    "available",
    "version",
    "threshold",
    "set_threshold",
    "data_dir",
    "set_data_dir",
    "child_mode",
    "set_child_mode",
    "advice",
    "set_advice",
    "max_disk",
    "set_max_disk",
    "empty",
    "zeros",
    "buffer",
    "is_file_backed",
    "lookup",
    "advise",
    "stats",
    "check",
    "parse_size",
    "BlockInfo",
    "Stats",
    "Setting",
    "ExmMemoryError",
]

ChildMode = Literal["cow", "shared", "duplicate"]
Advice = Literal["auto", "normal", "sequential", "random"]
#: A size: a whole number of bytes, or a string such as "512M" (see parse_size).
Size = Union[int, float, str]

CHILD_MODES = ("cow", "shared", "duplicate")
ADVICES = ("auto", "normal", "sequential", "random")

SIZE_MAX = (1 << 64) - 1

_NOT_UNDER_EXM = (
    "exm: libexm is not loaded in this Python process: start Python under exm: `exm python3 ...`"
)

# ---- the library --------------------------------------------------------------------

_lock = threading.Lock()
_state = None  # (library or None, why not): found at the first call


def _major_minor(v: str) -> str:
    return ".".join(v.split(".")[:2])


def _probe() -> Tuple[Optional[_ffi.Library], Optional[str]]:
    global _state
    if _state is not None:
        return _state
    with _lock:
        if _state is None:
            lib, version_, missing = _ffi.find_loaded()
            why = None
            if lib is None and version_ is None:
                why = _NOT_UNDER_EXM
            elif lib is None:
                why = (
                    f"exm: the libexm in this process (version {version_}) has no {missing}: "
                    "use the exm package and the exm command of the same release"
                )
            elif _major_minor(version_ or "") != _major_minor(_ffi.HEADER_VERSION):
                why = (
                    f"exm: the libexm in this process is version {version_}, but this exm package "
                    f"speaks {_ffi.HEADER_VERSION}: use the exm package and the exm command of the "
                    "same release"
                )
                lib = None
            _state = (lib, why)
    return _state


def _lib() -> _ffi.Library:
    lib, why = _probe()
    if lib is None:
        raise RuntimeError(why)
    return lib


def available() -> bool:
    """True when this process runs under exm (a matching libexm is loaded).

    The only function that works outside exm; every other one then raises
    RuntimeError with the reason.
    """
    return _probe()[0] is not None


def version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    return _lib().exm_version().decode()


def _oserror(err: int, message: str) -> OSError:
    # OSError(errno, ...) comes back as the matching subclass (FileNotFoundError, ...).
    return OSError(err, f"{message}: {os.strerror(err)}")


def _check_err(err: int, what: str) -> None:
    if err:
        raise _oserror(err, what)


# ---- sizes and names ---------------------------------------------------------------------

_UNIT_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}
_SIZE_RE = re.compile(r"(\d*)(?:\.(\d+))?\s*([kmgtpe]?)(i?b)?", re.IGNORECASE)
_MAX_TEXT_SIZE = (1 << 63) - 1


def parse_size(text: str) -> int:
    """Bytes from a size string: "4096", "512K", "64M", "1.5GiB", "2g", "8 MB".

    The one grammar of exm's settings (README, "Options"): a number with an
    optional unit K, M, G, T, P or E, binary whatever the spelling (1K =
    1024), optionally followed by B or iB, any case, blanks around the
    number or before the unit allowed. A fraction needs a unit and is
    rounded down to a whole byte. At most 2^63-1 bytes.

    Under exm this is the library's own parser (exm_parse_size), so that a
    size means the same here as in EXM_THRESHOLD; outside exm, the same
    grammar written out in Python. Raises ValueError for anything else.
    """
    try:
        lib = _lib()
    except RuntimeError:
        lib = None
    if lib is not None:
        out = ctypes.c_size_t()
        err = lib.exm_parse_size(text.encode("utf-8", "surrogateescape"), ctypes.byref(out))
        if err == 0:
            return int(out.value)
        if err == errno.ERANGE:
            raise ValueError(f"{text!r} is too large (at most 2^63-1 bytes)")
        # the library says only "not a size"; the Python grammar says why
    s = text.strip()
    m = _SIZE_RE.fullmatch(s)
    if not m or (m.group(1) == "" and m.group(2) is None):
        raise ValueError(f"{text!r} is not a size (bytes, or a number with K, M, G, T, P or E: 4096, 512K, 1.5GiB)")
    whole, frac, unit, suffix = m.group(1) or "0", m.group(2) or "", m.group(3), m.group(4)
    if suffix and suffix.lower() == "ib" and unit == "":
        raise ValueError(f"{text!r} is not a size (bytes, or a number with K, M, G, T, P or E: 4096, 512K, 1.5GiB)")
    if unit == "" and frac:
        raise ValueError(f"{text!r} is not a whole number of bytes (a fraction needs a unit: 1.5K)")
    frac = frac[:36]
    scale = 10 ** len(frac)
    n = ((int(whole) * scale + int(frac or "0")) << _UNIT_SHIFT[unit.lower()]) // scale
    if n > _MAX_TEXT_SIZE:
        raise ValueError(f"{text!r} is too large (at most 2^63-1 bytes)")
    if lib is not None:
        raise ValueError(f"{text!r} is not a size")
    return n


def _size(value: Any, what: str, allow_inf: bool = False) -> int:
    """A size_t from an int (or int-like), a whole float, math.inf (when
    allow_inf: SIZE_MAX) or a size string."""
    if isinstance(value, bool):
        raise TypeError(f"{what}: expected a size (bytes, or a string such as '512M'), got a bool")
    if isinstance(value, str):
        try:
            return parse_size(value)
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
    if isinstance(value, float):
        if allow_inf and value == math.inf:
            return SIZE_MAX
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"{what}: not a whole number of bytes: {value!r}")
        value = int(value)
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{what}: expected a size (bytes, or a string such as '512M'), "
            f"got {type(value).__name__}"
        ) from None
    if n < 0:
        raise ValueError(f"{what}: size must not be negative: {n}")
    if n > SIZE_MAX:
        raise ValueError(f"{what}: {n} bytes is more than a size_t holds")
    return n


def _choice(value: Any, names: Tuple[str, ...], what: str) -> int:
    if not isinstance(value, str):
        raise TypeError(f"{what}: expected one of {', '.join(names)}, got {type(value).__name__}")
    v = value.strip().lower()
    if v not in names:
        raise ValueError(f"{what}: {value!r} is not one of {', '.join(names)}")
    return names.index(v)


def _format_size(n: int) -> str:
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    i = 0
    while i < len(units) - 1 and n >= 1 << (10 * (i + 1)):
        i += 1
    if i == 0:
        return f"{n} B"
    v = n / (1 << (10 * i))
    return f"{v:.0f} {units[i]}" if v >= 100 or v.is_integer() else f"{v:.1f} {units[i]}"


# ---- settings ------------------------------------------------------------------------------


class Setting:
    """A setting just changed: ``name``, the new ``value`` and the ``previous`` one.

    Returned by threshold(v), data_dir(p), child_mode(m), advice(a) and
    max_disk(v). The change is already made and stays; used as a context
    manager, the previous value is put back when the ``with`` block ends
    (also on an exception)::

        with exm.child_mode("shared"):
            ...   # children forked here share the parent's blocks
        # the previous mode again

    ``with`` gives the new value (``as mode``). Settings belong to the whole
    process (all threads) and to the children it forks meanwhile.
    """

    __slots__ = ("name", "value", "previous", "_restore")

    def __init__(self, name: str, value: Any, previous: Any, restore: Any) -> None:
        self.name = name
        self.value = value
        self.previous = previous
        self._restore = restore

    def __enter__(self) -> Any:
        return self.value

    def __exit__(self, *exc: object) -> None:
        self._restore(self.previous)

    def __repr__(self) -> str:
        return f"<exm.Setting {self.name}={self.value!r} (was {self.previous!r})>"


# exm.h's EXM_THRESHOLD_AUTO (--threshold auto); SIZE_MAX is math.inf.
_THRESHOLD_AUTO = SIZE_MAX - 1


def _get_threshold() -> Union[int, str]:
    t = int(_lib().exm_get_threshold())
    return "auto" if t == _THRESHOLD_AUTO else t


def set_threshold(size: Size) -> Union[int, str]:
    """Sets the threshold (see threshold()); returns the previous one."""
    if isinstance(size, str) and size.strip().lower() == "auto":
        n = _THRESHOLD_AUTO
    else:
        n = _size(size, "exm.set_threshold", allow_inf=True)
        if n == _THRESHOLD_AUTO:
            raise ValueError(f"exm.set_threshold: {n} is reserved for 'auto'; say 'auto'")
    lib = _lib()
    old = _get_threshold()
    _check_err(lib.exm_set_threshold(n), "exm.set_threshold")
    return old


@overload
def threshold() -> Union[int, str]: ...
@overload
def threshold(size: Size) -> Setting: ...
def threshold(size: Optional[Size] = None) -> Union[int, str, Setting]:
    """Allocations through malloc of at least this many bytes go to the
    file-backed arena (0: all of them); it applies to later allocations.

    ``threshold()`` returns it in bytes, or "auto" under ``--threshold auto``
    (the default size, but served from RAM while the memory budget lasts).
    ``threshold(size)`` sets it (bytes, a string such as "512M", or "auto";
    ``math.inf`` sends nothing to the file and reads back as 2**64 - 1) and
    returns a Setting, so that ``with
    exm.threshold("1M"): ...`` changes it for one block of code. numpy
    allocates large arrays with malloc, so they follow it; exm.zeros and
    exm.empty do not.
    """
    if size is None:
        return _get_threshold()
    old = set_threshold(size)
    return Setting("threshold", _get_threshold(), old, set_threshold)


def _get_dir() -> str:
    lib = _lib()
    n = 4096
    while True:
        buf = ctypes.create_string_buffer(n)
        err = lib.exm_get_dir(buf, n)
        if err == 0:
            return os.fsdecode(buf.value)
        if err != 34 or n > 1 << 20:  # ERANGE: a longer buffer
            raise _oserror(err, "exm.data_dir")
        n *= 2


def set_data_dir(path: "Union[str, os.PathLike[str], bytes]") -> str:
    """Sets the data directory (see data_dir()); returns the previous one."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"exm.set_data_dir: expected a directory path, got {type(path).__name__}")
    p = os.path.abspath(os.fsdecode(path))
    raw = os.fsencode(p)
    if b"\0" in raw:
        raise ValueError("exm.set_data_dir: the path contains a NUL byte")
    old = _get_dir()
    err = _lib().exm_set_dir(raw)
    if err:
        raise _oserror(err, f"exm: cannot use {p} as the data directory")
    return old


@overload
def data_dir() -> str: ...
@overload
def data_dir(path: "Union[str, os.PathLike[str], bytes]") -> Setting: ...
def data_dir(path: "Optional[Union[str, os.PathLike[str], bytes]]" = None) -> Union[str, Setting]:
    """The directory of the (unlinked) backing files.

    ``data_dir(path)`` sets it (made absolute; it must be a writable
    directory, else OSError) and returns a Setting. It applies to arenas
    created afterwards: this process has one, created at its first
    file-backed allocation, so call it before anything is file-backed (or it
    changes only where forked children put theirs).
    """
    if path is None:
        return _get_dir()
    old = set_data_dir(path)
    return Setting("data_dir", _get_dir(), old, set_data_dir)


def _get_child_mode() -> str:
    code = int(_lib().exm_get_child_mode())
    return CHILD_MODES[code] if 0 <= code < len(CHILD_MODES) else "cow"


def set_child_mode(mode: ChildMode) -> str:
    """Sets the child mode (see child_mode()); returns the previous one."""
    code = _choice(mode, CHILD_MODES, "exm.set_child_mode")
    old = _get_child_mode()
    _check_err(_lib().exm_set_child_mode(code), "exm.set_child_mode")
    return old


@overload
def child_mode() -> str: ...
@overload
def child_mode(mode: ChildMode) -> Setting: ...
def child_mode(mode: Optional[ChildMode] = None) -> Union[str, Setting]:
    """What a forked child sees of this process's file-backed blocks.

    - "cow" (the default): the child reads them; what it writes stays its
      own and the parent never sees it;
    - "shared": parent and child share them, writable both ways (workers can
      write results into a parent's array);
    - "duplicate": the child gets its own copy as of the fork, even if the
      parent writes right after (costs time and disk at the fork).

    ``child_mode(mode)`` sets it and returns a Setting, for::

        with exm.child_mode("shared"):
            with multiprocessing.get_context("fork").Pool(4) as pool:
                pool.map(work, ranges)

    The mode that counts is the one in force when the child is forked: a
    multiprocessing Pool forks its workers when it is created (and again
    when it replaces one), so create the pool inside the ``with`` block.
    The "spawn" and "forkserver" start methods do not fork this process:
    their workers start a new interpreter and share nothing.
    """
    if mode is None:
        return _get_child_mode()
    old = set_child_mode(mode)
    return Setting("child_mode", _get_child_mode(), old, set_child_mode)


def _get_advice() -> str:
    code = int(_lib().exm_get_advice())
    return ADVICES[code] if 0 <= code < len(ADVICES) else "auto"


def set_advice(policy: Advice) -> str:
    """Sets the arena's advice policy (see advice()); returns the previous one."""
    code = _choice(policy, ADVICES, "exm.set_advice")
    old = _get_advice()
    _check_err(_lib().exm_set_advice(code), "exm.set_advice")
    return old


@overload
def advice() -> str: ...
@overload
def advice(policy: Advice) -> Setting: ...
def advice(policy: Optional[Advice] = None) -> Union[str, Setting]:
    """The arena's access advice policy: "auto", "normal", "sequential" or "random".

    "normal", "sequential" and "random" apply madvise to the whole arena at
    once (blocks given advice with advise() included); "auto" (the default)
    lets exm adapt the advice of blocks of 16 MiB and more to how they are
    read. ``advice(policy)`` sets it and returns a Setting. To advise one
    array, use advise().
    """
    if policy is None:
        return _get_advice()
    old = set_advice(policy)
    return Setting("advice", _get_advice(), old, set_advice)


def _get_max_disk() -> int:
    return int(_lib().exm_get_max_disk())


def set_max_disk(size: Size) -> int:
    """Sets the disk cap (see max_disk()); returns the previous one."""
    n = _size(size, "exm.set_max_disk")
    old = _get_max_disk()
    _check_err(_lib().exm_set_max_disk(n), "exm.set_max_disk")
    return old


@overload
def max_disk() -> int: ...
@overload
def max_disk(size: Size) -> Setting: ...
def max_disk(size: Optional[Size] = None) -> Union[int, Setting]:
    """Cap on the disk this process's arena reserves, in bytes (0: no cap).

    Allocations that would pass it fail: numpy raises MemoryError, exm.zeros
    an ExmMemoryError saying so. ``max_disk(size)`` sets it (bytes or a
    string such as "10G") and returns a Setting.
    """
    if size is None:
        return _get_max_disk()
    old = set_max_disk(size)
    return Setting("max_disk", _get_max_disk(), old, set_max_disk)


# ---- statistics and checks -------------------------------------------------------------------


class Stats(NamedTuple):
    """The arena's statistics (exm_stats_t of exm.h), all ints; see stats()."""

    live_bytes: int
    peak_live_bytes: int
    live_blocks: int
    total_allocs: int
    total_frees: int
    disk_reserved: int
    peak_disk_reserved: int
    bytes_punched: int
    arena_size: int
    fallbacks: int
    failures: int
    forks: int
    alloc_ns: int
    ram_budget_bytes: int


def _document_fields(cls: Any, docs: "dict[str, str]") -> None:
    # help() shows a named tuple's field docs (the field getters' __doc__).
    for name in cls._fields:
        getattr(cls, name).__doc__ = docs[name]


_document_fields(
    Stats,
    {
        "live_bytes": "usable bytes of live arena blocks",
        "peak_live_bytes": "the most live_bytes ever were",
        "live_blocks": "arena blocks now live",
        "total_allocs": "arena allocations served",
        "total_frees": "arena blocks freed",
        "disk_reserved": "bytes fallocated and not yet given back",
        "peak_disk_reserved": "the most disk_reserved ever was",
        "bytes_punched": "bytes given back to the filesystem",
        "arena_size": "bytes of the arena carved so far (its high-water mark)",
        "fallbacks": "below-threshold requests served by the arena after malloc failed",
        "failures": "arena requests that failed (ENOMEM)",
        "forks": "forks seen by this process",
        "alloc_ns": "nanoseconds spent inside the arena allocator",
        "ram_budget_bytes": "--threshold auto: bytes served from RAM by the budget",
    },
)


def stats() -> Stats:
    """The arena's statistics now (all zeros before the first file-backed allocation)."""
    raw = _ffi.exm_stats_t()
    _check_err(_lib().exm_get_stats(ctypes.byref(raw)), "exm.stats")
    return Stats(*(int(getattr(raw, f)) for f in Stats._fields))


def check() -> None:
    """Walks every structure of the allocator (costs O(blocks)).

    Returns None when they are consistent; raises RuntimeError when not
    (the library prints the details on stderr).
    """
    err = _lib().exm_check()
    if err:
        raise RuntimeError(
            f"exm.check: the file-backed arena is inconsistent ({os.strerror(err)}; details on stderr)"
        )


# ---- objects: where their memory is ----------------------------------------------------------


class _Py_buffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


_PyBUF_FULL_RO = 0x100 | 0x10 | 0x08 | 0x04  # INDIRECT | STRIDES | ND | FORMAT
_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_Py_buffer), ctypes.c_int]
_get_buffer.restype = ctypes.c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_Py_buffer)]
_release_buffer.restype = None


def _memory_of(obj: Any, what: str) -> Tuple[int, int]:
    """(address of obj's first byte, nbytes of its data). numpy arrays are
    read through __array_interface__ (every dtype, no buffer export); anything
    else through the buffer protocol."""
    iface = getattr(type(obj), "__array_interface__", None) is not None and getattr(
        obj, "__array_interface__", None
    )
    if isinstance(iface, dict) and isinstance(iface.get("data"), tuple):
        nbytes = getattr(obj, "nbytes", None)
        if isinstance(nbytes, int):
            return int(iface["data"][0] or 0), nbytes
    view = _Py_buffer()
    try:
        _get_buffer(obj, ctypes.byref(view), _PyBUF_FULL_RO)
    except (TypeError, BufferError, ValueError) as e:
        raise TypeError(
            f"{what}: expected an object with the buffer protocol (a numpy array, bytearray, "
            f"memoryview, mmap, ...), got {type(obj).__name__} ({e})"
        ) from None
    try:
        return int(view.buf or 0), int(view.len)
    finally:
        _release_buffer(ctypes.byref(view))


class BlockInfo(NamedTuple):
    """Where an object's data are in exm's backing file; see lookup()."""

    path: Optional[str]
    offset: int
    size: int
    block_offset: int
    block_size: int
    fd: Optional[int]
    base: int


_document_fields(
    BlockInfo,
    {
        "path": "/proc/self/fd/N, which opens the (unlinked) backing file (None if exm has "
        "no descriptor of it). In a forked child, blocks inherited in cow or shared mode name "
        "the parent's file (cow: without the child's own writes)",
        "offset": "offset of the object's first byte in that file",
        "size": "bytes of the object's data (its nbytes)",
        "block_offset": "offset in the file of the arena block holding the object",
        "block_size": "usable size of that block",
        "fd": "the file's descriptor, owned by exm: do not close it (None when path is None)",
        "base": "address of the block",
    },
)


def lookup(obj: Any) -> Optional[BlockInfo]:
    """Where obj's data are in the file: a BlockInfo (path, offset, size, ...),
    or None when they are in ordinary memory.

    obj is anything with the buffer protocol (numpy arrays and their views
    and slices, bytearray, memoryview, mmap, ...). Reading ``size`` bytes at
    ``offset`` of ``path`` gives the data (for a contiguous obj).
    """
    address, nbytes = _memory_of(obj, "exm.lookup")
    lib = _lib()
    info = _ffi.exm_block_info_t()
    err = lib.exm_lookup(address, ctypes.byref(info)) if address else 2
    if err == 2:  # ENOENT
        return None
    _check_err(err, "exm.lookup")
    base = int(info.base or 0)
    named = info.fd >= 0 and bool(info.path)
    return BlockInfo(
        path=os.fsdecode(info.path) if named else None,
        offset=int(info.offset) + (address - base),
        size=nbytes,
        block_offset=int(info.offset),
        block_size=int(info.size),
        fd=int(info.fd) if named else None,
        base=base,
    )


def is_file_backed(obj: Any) -> bool:
    """True when obj's data (anything with the buffer protocol) are in exm's arena."""
    address, _ = _memory_of(obj, "exm.is_file_backed")
    lib = _lib()
    return bool(address) and bool(lib.exm_is_file_backed(address))


def advise(obj: Any, advice: Advice) -> bool:
    """madvise the whole arena block holding obj's data.

    advice: "random" before scattered reads (no read-ahead: each fault reads
    one page), "sequential" before a pass, "normal", or "auto" (back to the
    arena's policy). Returns True when advised; when obj is not file-backed,
    warns (RuntimeWarning) and returns False. Under the default "auto"
    policy exm adapts blocks of 16 MiB and more by itself; advice given here
    is left as set.
    """
    code = _choice(advice, ADVICES, "exm.advise")
    address, _ = _memory_of(obj, "exm.advise")
    lib = _lib()
    err = lib.exm_advise(address, code) if address else 2
    if err == 2:  # ENOENT
        warnings.warn(
            "exm.advise: the object is not file-backed (its data are in ordinary memory): "
            "nothing advised",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    _check_err(err, "exm.advise")
    return True


# ---- file-backed memory whatever the threshold ---------------------------------------------


class ExmMemoryError(MemoryError):
    """The arena cannot serve an allocation; the message says why.

    Attributes: ``bytes`` (the request), ``dir`` (the data directory),
    ``reason`` ("cap", "disk full" or "arena").
    """

    def __init__(self, message: str, nbytes: int, dir: str, reason: str) -> None:
        super().__init__(message)
        self.bytes = nbytes
        self.dir = dir
        self.reason = reason


def _alloc_error(nbytes: int, what: str) -> ExmMemoryError:
    d = _get_dir()
    cap = _get_max_disk()
    s = stats()
    try:
        fs = os.statvfs(d)
        avail: Optional[int] = fs.f_bavail * fs.f_frsize
    except OSError:
        avail = None
    if cap and s.disk_reserved + nbytes > cap:
        reason = "cap"
        why = (
            f"it would pass the disk cap (max_disk {_format_size(cap)}; "
            f"{_format_size(s.disk_reserved)} reserved already)"
        )
    elif avail is not None and avail < nbytes:
        reason = "disk full"
        why = f"the disk is full (only {_format_size(avail)} free)"
    else:
        reason = "arena"
        why = "the arena cannot serve it (is the data directory usable? see exm's line on stderr)"
    return ExmMemoryError(
        f"{what}: cannot allocate {_format_size(nbytes)} of file-backed memory in {d}: {why}",
        nbytes,
        d,
        reason,
    )


# Requests below this are small blocks for libexm (EXM_SMALL_MAX of
# native/core.h): carved among others from shared segments, with their
# bookkeeping in band, and copied privately into a forked child even in shared
# mode. Every block made here is at least this big, so that it is a page
# block: shared with children in shared mode like any large array.
_MIN_BLOCK = 4096


def _alloc(nbytes: int, advice: Optional[Advice], what: str) -> Tuple[int, Any]:
    """(address, exm_free) of a fresh block of at least nbytes bytes."""
    if nbytes > _MAX_TEXT_SIZE:
        raise ValueError(f"{what}: {nbytes} bytes is too large (at most 2^63-1)")
    code = None if advice is None else _choice(advice, ADVICES, f"{what}: advice")
    lib = _lib()
    size = max(nbytes, _MIN_BLOCK)
    p = lib.exm_alloc(size)
    if not p:
        # Blocks of arrays that are unreachable but not yet collected (cycles)
        # may be what fills the disk or the cap.
        if gc.collect():
            p = lib.exm_alloc(size)
    if not p:
        raise _alloc_error(nbytes, what)
    if code is not None:
        lib.exm_advise(p, code)
    return int(p), lib.exm_free


def _finalize_with(owner: object, free: Any, address: int) -> None:
    # Not at interpreter exit: an array still alive then may yet be used by
    # other exit handlers; the arena goes away with the process anyway.
    weakref.finalize(owner, free, address).atexit = False


class _Block:
    """Owns one exm_alloc block, as the base of the numpy arrays on it: numpy
    keeps a view's base alive, so the block is freed (exm_free, from a
    weakref finalizer) once the array and every view of it are gone."""

    __slots__ = ("address", "nbytes", "__weakref__")

    def __init__(self, address: int, nbytes: int) -> None:
        self.address = address
        self.nbytes = nbytes

    @property
    def __array_interface__(self) -> dict:
        return {"version": 3, "shape": (self.nbytes,), "typestr": "|u1", "data": (self.address, False)}

    def __repr__(self) -> str:
        return f"<exm block of {self.nbytes} bytes at {self.address:#x}>"


def _shape(shape: Any, what: str) -> Tuple[int, ...]:
    try:
        dims = (operator.index(shape),)
    except TypeError:
        try:
            dims = tuple(operator.index(d) for d in shape)
        except TypeError:
            raise TypeError(f"{what}: the shape must be an int or a sequence of ints, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise ValueError(f"{what}: negative dimensions are not allowed: {dims}")
    return dims


def empty(
    shape: Union[int, Sequence[int]],
    dtype: Any = float,
    order: str = "C",
    *,
    advice: Optional[Advice] = None,
) -> "numpy.ndarray":
    """A numpy array in exm's file-backed arena, whatever the threshold.

    Like numpy.empty (shape, dtype, order "C" or "F"), but its memory is one
    exm_alloc block, which reads as zeros (so this is the same as zeros()).
    advice ("sequential", "random", ...) is given to the block at once. The
    block is freed when the array and every view of it are collected. It is
    at least 4 KiB, also for a tiny array, so that it is a page block of the
    arena (shared with forked children in "shared" mode).

    Raises ValueError for a bad shape, order or dtype (Python objects cannot
    live in the file), ExmMemoryError (a MemoryError) when the arena cannot
    serve it, RuntimeError outside exm, ImportError without numpy (buffer()
    needs none).
    """
    return _array(shape, dtype, order, advice, "exm.empty")


def zeros(
    shape: Union[int, Sequence[int]],
    dtype: Any = float,
    order: str = "C",
    *,
    advice: Optional[Advice] = None,
) -> "numpy.ndarray":
    """A zero-filled numpy array in exm's file-backed arena, whatever the threshold.

    Like numpy.zeros, but nothing is written: fresh arena memory reads as
    zeros, so ``exm.zeros((2**28,))`` (2 GiB) is ready at once and uses no
    RAM until touched; pages written later can be evicted to the file under
    memory pressure instead of the process being killed. Freed when the array
    and every view of it are collected. Arguments and errors as for empty().
    """
    return _array(shape, dtype, order, advice, "exm.zeros")


def _array(shape: Any, dtype: Any, order: str, advice: Optional[Advice], what: str) -> "numpy.ndarray":
    try:
        import numpy
    except ImportError:
        raise ImportError(
            f"{what} needs numpy (Debian/Ubuntu: apt-get install python3-numpy; or pip install "
            "numpy); exm.buffer(nbytes) works without it"
        ) from None
    dims = _shape(shape, what)
    if order not in ("C", "F"):
        raise ValueError(f"{what}: order must be 'C' or 'F', got {order!r}")
    try:
        dt = numpy.dtype(dtype)
    except TypeError as e:
        raise ValueError(f"{what}: not a dtype: {dtype!r} ({e})") from None
    if dt.hasobject:
        raise ValueError(f"{what}: dtype {dt} holds Python objects, which cannot live in exm's file")
    if dt.subdtype is not None:  # "(3,)f8": the sub-array's shape joins the array's
        dt, sub = dt.subdtype
        dims = dims + sub
    nbytes = math.prod(dims) * dt.itemsize
    address, free = _alloc(nbytes, advice, what)
    try:
        block = _Block(address, nbytes)
        _finalize_with(block, free, address)
    except BaseException:
        free(address)
        raise
    return numpy.asarray(block).view(dt).reshape(dims, order=order)


_ArrayType = type(ctypes.c_ubyte * 1)


def buffer(nbytes: Size, *, advice: Optional[Advice] = None) -> memoryview:
    """A writable memoryview of nbytes bytes (format "B") in exm's arena,
    reading as zeros, whatever the threshold; no numpy needed.

    nbytes may be a string such as "1G". Slices and casts of it and
    objects made on it (``numpy.frombuffer(b, "f8")``) keep its block alive;
    it is freed once none is left. Errors as for empty().
    """
    n = _size(nbytes, "exm.buffer")
    address, free = _alloc(n, advice, "exm.buffer")
    try:
        # A ctypes array type of its own (not `c_ubyte * n`, which ctypes caches
        # for ever): it goes away with the buffer.
        kind = _ArrayType("exm_buffer", (ctypes.Array,), {"_type_": ctypes.c_ubyte, "_length_": n})
        owner = kind.from_address(address)
        _finalize_with(owner, free, address)
    except BaseException:
        free(address)
        raise
    return memoryview(owner).cast("B")[:n]
