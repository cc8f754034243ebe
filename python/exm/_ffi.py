"""The one ctypes table of libexm, mirroring native/exm.h one to one.

The functions in the header's order with its names and C types, the enums'
values and the two structs the functions fill in. Nothing here interprets a
result: functions returning int return 0 or an errno value, exactly as in C.
The API in ``exm/__init__.py`` turns that into Python (exceptions, ints,
named tuples). When exm.h changes, this file changes with it;
tests/python.test.ts checks the struct layouts and the function list against
the header.

The symbols are looked up in the process's global scope (``CDLL(None)``:
dlopen(NULL), the executable and everything loaded with it, LD_PRELOAD
first), never in a file: the library serving this process's malloc is the one
to talk to, and loading a second copy would give the process a second
allocator that serves nothing.
"""

import ctypes
from ctypes import POINTER, c_char, c_char_p, c_int, c_size_t, c_uint64, c_void_p
from typing import Optional

#: EXM_VERSION_MAJOR.MINOR.PATCH of the exm.h this table mirrors.
HEADER_VERSION = "0.1.0"

# ---- enums ------------------------------------------------------------------

EXM_CHILD_COW = 0
EXM_CHILD_SHARED = 1
EXM_CHILD_DUPLICATE = 2

EXM_ADVICE_AUTO = 0
EXM_ADVICE_NORMAL = 1
EXM_ADVICE_SEQUENTIAL = 2
EXM_ADVICE_RANDOM = 3

# ---- structs (LP64 Linux: ctypes lays them out as the C compiler does) ------


class exm_block_info_t(ctypes.Structure):
    _fields_ = [
        ("base", c_void_p),  # start of the block holding the pointer
        ("size", c_size_t),  # usable size of the block
        ("offset", c_size_t),  # offset of base in the backing file
        ("fd", c_int),  # descriptor of the backing file (owned by exm)
        ("path", c_char * 256),  # /proc/self/fd/N, empty for a parent's block in a child
    ]


class exm_stats_t(ctypes.Structure):
    _fields_ = [
        ("live_bytes", c_uint64),
        ("peak_live_bytes", c_uint64),
        ("live_blocks", c_uint64),
        ("total_allocs", c_uint64),
        ("total_frees", c_uint64),
        ("disk_reserved", c_uint64),
        ("peak_disk_reserved", c_uint64),
        ("bytes_punched", c_uint64),
        ("arena_size", c_uint64),
        ("fallbacks", c_uint64),
        ("failures", c_uint64),
        ("forks", c_uint64),
        ("alloc_ns", c_uint64),
        ("ram_budget_bytes", c_uint64),
    ]


# ---- functions --------------------------------------------------------------

#: name -> (return type, argument types), in exm.h's order.
SYMBOLS = {
    # Version
    "exm_version": (c_char_p, []),
    # Settings
    "exm_parse_size": (c_int, [c_char_p, POINTER(c_size_t)]),
    "exm_get_threshold": (c_size_t, []),
    "exm_set_threshold": (c_int, [c_size_t]),
    "exm_get_dir": (c_int, [c_char_p, c_size_t]),
    "exm_set_dir": (c_int, [c_char_p]),
    "exm_get_child_mode": (c_int, []),
    "exm_set_child_mode": (c_int, [c_int]),
    "exm_get_advice": (c_int, []),
    "exm_set_advice": (c_int, [c_int]),
    "exm_get_max_disk": (c_size_t, []),
    "exm_set_max_disk": (c_int, [c_size_t]),
    # Explicit file-backed allocation
    "exm_alloc": (c_void_p, [c_size_t]),
    "exm_free": (None, [c_void_p]),
    # Lookup
    "exm_is_file_backed": (c_int, [c_void_p]),
    "exm_lookup": (c_int, [c_void_p, POINTER(exm_block_info_t)]),
    "exm_advise": (c_int, [c_void_p, c_int]),
    # Statistics and checks
    "exm_get_stats": (c_int, [POINTER(exm_stats_t)]),
    "exm_check": (c_int, []),
}


class Library:
    """The exm_* functions of the process's libexm, as ctypes functions."""

    def __init__(self, scope: ctypes.CDLL) -> None:
        for name, (restype, argtypes) in SYMBOLS.items():
            fn = getattr(scope, name)  # AttributeError when missing
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)


def find_loaded() -> "tuple[Optional[Library], Optional[str], Optional[str]]":
    """(library, its version, None) when the process has libexm loaded,
    (None, version or None, missing symbol) when it has none or an incomplete
    one."""
    scope = ctypes.CDLL(None)
    try:
        version_fn = scope.exm_version
    except AttributeError:
        return None, None, "exm_version"
    version_fn.restype = c_char_p
    version_fn.argtypes = []
    raw = version_fn()
    version = raw.decode("utf-8", "replace") if raw else "unknown"
    for name in SYMBOLS:
        if not hasattr(scope, name):
            return None, version, name
    return Library(scope), version, None
