/*
 * core.h: the carving core. It is handed a range [base, base + capacity) and
 * carves blocks out of it; it never calls the operating system. What it needs
 * from outside (reserving and releasing disk for a range, memory for its own
 * bookkeeping) comes through exm_host_t, so the same code runs on a plain
 * buffer in the unit tests and on a file mapping in the library.
 *
 * Two allocators share the range:
 *  - the page allocator hands out page-multiple extents. Its bookkeeping is
 *    out of band (exm_ext_t nodes in host memory), so freeing, shrinking and
 *    coalescing never touch the user's pages, which may be on disk;
 *  - the small allocator (requests below one page) carves dlmalloc-style
 *    chunks with in-band boundary tags from 1 MiB segments that it takes from
 *    the page allocator.
 *
 * Free page extents are CLEAN (no disk behind them, read as zeros) or DIRTY
 * (disk still reserved, old contents). Small frees go to DIRTY so that a
 * malloc/free loop costs no system call; DIRTY bytes are bounded by the
 * retention limit (exm_core_retain_limit), past which the largest DIRTY
 * extents are released (punched) until half the limit is left (the rest
 * stays for reuse).
 *
 * Not thread-safe: the caller holds a lock.
 */
#ifndef EXM_CORE_H
#define EXM_CORE_H

#include <stddef.h>
#include <stdint.h>

#define EXM_PAGE ((size_t)4096)
#define EXM_SEG_SIZE ((size_t)1 << 20)   /* small-allocator segment */
#define EXM_SMALL_MAX ((size_t)4096)     /* requests below this are small */

typedef struct exm_host {
  void *ctx;
  /* Reserve disk for [off, off+len): 0 or an errno (ENOMEM when full or capped). */
  int (*commit)(void *ctx, size_t off, size_t len);
  /* Give the disk of [off, off+len) back; afterwards it reads as zeros. */
  void (*decommit)(void *ctx, size_t off, size_t len);
  /* Zeroed, page-aligned memory for bookkeeping, or NULL. */
  void *(*meta_map)(void *ctx, size_t len);
  void (*meta_unmap)(void *ctx, void *p, size_t len);
} exm_host_t;

/* BUSY: a freed block whose disk the caller is giving back outside the lock
 * (exm_core_free_begin / exm_core_free_end); neither free nor live meanwhile. */
enum { EXT_CLEAN = 0, EXT_DIRTY = 1, EXT_USED = 2, EXT_SEG = 3, EXT_BUSY = 4 };

typedef struct exm_ext exm_ext_t;
struct exm_ext {
  size_t off;                       /* byte offset in the range, page multiple */
  size_t len;                       /* bytes, page multiple */
  exm_ext_t *prev, *next;           /* neighbours in address order (tile [0, top)) */
  exm_ext_t *fprev, *fnext;         /* bin list while free; node free list */
  uint8_t state;                    /* EXT_* */
  uint8_t advice;                   /* EXM_EXT_ADVICE_*: whose advice the block carries */
  uint16_t bin;                     /* bin index while free */
  uint64_t *live;                   /* a segment's bitmap of live chunk starts (1 bit per 16 bytes) */
};

/* exm_ext_t.advice: none (the arena's default), the user's (exm_advise) or
 * the advisor's (EXM_ADVICE=auto), with the EXM_ADVICE_* value it carries. */
#define EXM_EXT_ADVICE_NONE 0
#define EXM_EXT_ADVICE_USER(a) ((uint8_t)((a) + 1))
#define EXM_EXT_ADVICE_AUTO_FLAG 0x80
#define EXM_EXT_ADVICE_AUTO(a) ((uint8_t)(EXM_EXT_ADVICE_AUTO_FLAG | (a)))
#define EXM_EXT_ADVICE_IS_AUTO(v) (((v) & EXM_EXT_ADVICE_AUTO_FLAG) != 0)

#define EXM_PBINS 320                 /* page-extent bins, per free state */
#define EXM_SBINS 160                 /* small-chunk bins */

typedef struct exm_core_stats {
  uint64_t live_bytes, peak_live_bytes, live_blocks;
  uint64_t total_allocs, total_frees;
  uint64_t committed, peak_committed;   /* disk reserved */
  uint64_t punched;                     /* bytes given back */
  uint64_t top_peak;                    /* high-water mark of the carved range */
  uint64_t failures;
} exm_core_stats_t;

typedef struct exm_core {
  char *base;                       /* start of the range */
  size_t cap;                       /* its size, page multiple */
  uintptr_t cache_key;              /* the per-thread cache's mark is this xor the chunk's address */
  size_t top;                       /* [0, top) is tiled by extents; [top, cap) is clean */
  exm_host_t host;
  exm_ext_t *last;                  /* extent ending at top, or NULL */
  /* page-extent bins: [0] clean, [1] dirty */
  exm_ext_t *pbin[2][EXM_PBINS];
  uint64_t pmap[2][(EXM_PBINS + 63) / 64];
  size_t dirty_bytes, dirty_limit;  /* DIRTY free bytes, and when to release them */
  size_t retain_max;                /* freed blocks larger than this are punched at once */
  /* used extents by offset: open addressing, keys are page numbers + 1 */
  size_t *hkeys;
  exm_ext_t **hvals;
  size_t hcap, hcount;
  /* node allocator */
  exm_ext_t *node_free;
  uint64_t *bitmap_free;            /* spare segment bitmaps (linked through their first word) */
  /* The live-chunk bitmap of the segment in each EXM_SEG_SIZE-aligned MiB
   * of the address space that the range touches, NULL where there is none:
   * how a free finds it without the lock (exm_core_small_peek). Made at the
   * first segment, one pointer per MiB (64 MiB of untouched anonymous memory
   * for 8 TiB); written under the lock, read relaxed. seg_bias is seg_live's
   * address less base / EXM_SEG_SIZE slots, so that the slot of address a is
   * at seg_bias + a / EXM_SEG_SIZE * 8 (0 until seg_live is made). Bitmaps
   * are never unmapped (they go back to bitmap_free), so a peek racing a
   * segment's release reads stale bits in memory that is still there. */
  uint64_t **seg_live;
  size_t seg_slots;
  uintptr_t seg_bias;
  /* small allocator */
  void *sbin[EXM_SBINS];            /* free chunk lists */
  uint64_t smap[(EXM_SBINS + 63) / 64];
  size_t seg_count, seg_empty;      /* segments, and wholly free ones kept */
  size_t max_commit;                /* 0: no cap on committed bytes */
  exm_core_stats_t st;
} exm_core_t;

/* Flags for exm_core_alloc. */
#define EXM_CORE_ZERO 1   /* caller needs zeros: prefer clean memory */

void exm_core_init(exm_core_t *c, void *base, size_t cap, const exm_host_t *host);
/* The cache's mark from now on (exm_core_init makes one from addresses; the
 * library gives a random one before the first chunk is cached). The top bit
 * is set and the low bit too, whatever seed says: never a pointer nor 0. */
void exm_core_set_key(exm_core_t *c, uint64_t seed);
/* Replace the host callbacks (the arena was copied into a new place). */
void exm_core_set_host(exm_core_t *c, const exm_host_t *host);
/* Cap on committed bytes from now on; 0: none. */
void exm_core_set_max_commit(exm_core_t *c, size_t bytes);
/* Lower the capacity to cap (a multiple of EXM_SEG_SIZE), but not below
 * what is carved: the new capacity, for the caller to unmap the range past
 * it. Never raises it. */
size_t exm_core_shrink(exm_core_t *c, size_t cap);
/* The core's counters (read-only). */
const exm_core_stats_t *exm_core_stats(const exm_core_t *c);
/* NULL with *err set (ENOMEM) on failure. *dirty is set to 1 when the memory
 * may hold old contents (the caller clears it if it needs zeros). */
void *exm_core_alloc(exm_core_t *c, size_t n, size_t align, int flags, int *dirty, int *err);
/* 0, or -1 when p is not the start of a live block (caller reports/aborts). */
int exm_core_free(exm_core_t *c, void *p);
/* The same, except that a block too large to retain is not given back here:
 * it is left BUSY and returned in *busy, for the caller to decommit without
 * the lock and then hand to exm_core_free_end (with the lock). */
int exm_core_free_begin(exm_core_t *c, void *p, exm_ext_t **busy);
/* Between the two, without the lock: give back busy's disk (host decommit).
 * Reads only busy's offset and length, which nothing else changes while it
 * is BUSY. */
void exm_core_free_decommit(exm_core_t *c, const exm_ext_t *busy);
void exm_core_free_end(exm_core_t *c, exm_ext_t *busy);
/* What may be retained as DIRTY: dirty_limit, or a quarter of the live
 * bytes when that is more. A live set's churn of page blocks then mostly
 * finds its frees again, where each punch and each reservation is a system
 * call under the lock (and, on a filesystem mounted with -o discard, a wait
 * for the device while the file's lock is held). */
size_t exm_core_retain_limit(const exm_core_t *c);
/* Resize the live block p in place to n bytes: 0 on success, ENOMEM when it
 * cannot be done in place, -1 when p is not a live block. */
int exm_core_resize(exm_core_t *c, void *p, size_t n);
/* Usable size of the live block starting at p, 0 if p is not one. */
size_t exm_core_usable(exm_core_t *c, const void *p);
/* Live block containing p (interior pointers allowed): 1 and base/size, or 0. */
int exm_core_find(exm_core_t *c, const void *p, void **base, size_t *size, exm_ext_t **ext);
/* The extent of the live page block starting at p, or NULL. O(1). */
exm_ext_t *exm_core_block(exm_core_t *c, const void *p);
/* Up to max live page blocks of at least min bytes whose advice is not the
 * user's: their offsets and lengths, in address order. */
int exm_core_large(exm_core_t *c, size_t min, size_t *offs, size_t *lens, int max);
/* Forget every block's advice (a new policy was applied to the whole range). */
void exm_core_clear_advice(exm_core_t *c);
/* Give back the disk of every DIRTY extent. */
void exm_core_flush(exm_core_t *c);
/* Call fn for every extent holding disk (live, segment or retained), in
 * address order, with its state (EXT_*); stops at the first non-zero return
 * and returns it. */
int exm_core_walk(exm_core_t *c, int (*fn)(void *ctx, size_t off, size_t len, int state), void *ctx);
/* Unmark every cached chunk (a forked child: the caches of the parent's
 * other threads did not come along). */
void exm_core_clear_cached(exm_core_t *c);
/* Walk every structure; 0 if consistent, else -1 with a reason in msg. */
int exm_core_check(exm_core_t *c, char *msg, size_t msglen);
/* ---- lock-free peeks for the per-thread cache (tcache.c) ----------------------
 * A small chunk's size never changes while it is live, and its segment's
 * bitmap of live chunk starts is reachable through seg_live, so a live small
 * chunk can be recognised without the lock. Page-aligned pointers are never
 * peeked at: they may be large blocks, whose pages must not be touched. */
#define EXM_CHUNK_OF(p) ((size_t *)((char *)(p) - 16))
/* A live small chunk that sits in some thread's cache or in the depot
 * (tcache.c) holds a mark in its second word (every small chunk has 24
 * usable bytes): the core's cache_key xor the chunk's address, written and
 * cleared by the cache without the lock; the core refuses to free, resize
 * or size a chunk that holds it. The mark is in the chunk's body, not its
 * head, so that a cache's push and pop are plain stores to the line they
 * write anyway: the head is also written by the core (a neighbour's
 * PINUSE), so a mark there took an atomic read-modify-write on each push
 * and pop, which stalled on the line when another core had it (larson at 2
 * threads: ~25 % of the run). Only the cache writes the mark and only while
 * it owns the chunk; the core never writes a live chunk's body. A chunk
 * given back to the core is unmarked first, so no mark is left in free
 * memory. The address is in the mark so that one copied out of a cached
 * chunk into a live one (a program that reads freed memory: glibc's
 * tst-tcfree3 does) does not make the live one look cached; the key is
 * random, so a live chunk holds its own mark only if the program wrote that
 * value there itself. */
#define EXM_CACHED_WORD(p) (&((uintptr_t *)(p))[1])
static inline uintptr_t exm_core_cache_mark(const exm_core_t *c, const void *p) { return c->cache_key ^ (uintptr_t)p; }
static inline int exm_core_is_cached(const exm_core_t *c, const void *p) {
  return __atomic_load_n(EXM_CACHED_WORD(p), __ATOMIC_RELAXED) == exm_core_cache_mark(c, p);
}
static inline void exm_core_mark_cached(const exm_core_t *c, void *p) {
  __atomic_store_n(EXM_CACHED_WORD(p), exm_core_cache_mark(c, p), __ATOMIC_RELAXED);
}
static inline void exm_core_unmark_cached(void *p) { __atomic_store_n(EXM_CACHED_WORD(p), 0, __ATOMIC_RELAXED); }
/* Two frees of one chunk that race each other. A free that caches a chunk
 * swaps the mark in with one compare-and-swap, so of two that race, one
 * finds the mark (the swap fails, or it read the mark) and reports the
 * double free. A free under the lock (exm_core_free: a thread's exit, a
 * full depot, a flush) puts no mark in; it clears the chunk's live bit and
 * then reads the mark word, while the cache swaps the mark in and then
 * reads the live bit, all sequentially consistent: of a free and a claim
 * that race, at least one sees the other (the free reads the mark, or the
 * claim reads the bit cleared) and reports it. A lock cmpxchg on each push,
 * on a line the push writes anyway. 1 when the chunk is now this caller's
 * (p live, the mark in), 0 for a double free. */
static inline int exm_core_small_live_sc(const exm_core_t *c, const void *p);
static inline int exm_core_claim_cached(const exm_core_t *c, void *p) {
  uintptr_t *w = EXM_CACHED_WORD(p), m = exm_core_cache_mark(c, p);
  uintptr_t v = __atomic_load_n(w, __ATOMIC_RELAXED);
  if (v == m || !__atomic_compare_exchange_n(w, &v, m, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) return 0;
  return exm_core_small_live_sc(c, p);
}
static inline size_t *exm_core_head_of(void *p) { return &EXM_CHUNK_OF(p)[1]; }
static inline size_t exm_core_chunk_size_for(size_t n) {
  size_t sz = (n + 8 + 15) & ~(size_t)15;
  return sz < 32 ? 32 : sz;
}
/* Chunk size of the live small chunk at p, or 0 when p is not one (then the
 * caller takes the locked path, which checks it properly). Reads the slot's
 * bitmap pointer, one bitmap word and the chunk's own head: nothing of the
 * next chunk, whose head shares a line with the neighbouring block's first
 * bytes, which another thread may be writing (larson at 2 threads spent two
 * thirds of its frees on that read). A live chunk's bit is set from its
 * carving to its release by the core, also while it is cached. */
static inline size_t exm_core_small_peek(const exm_core_t *c, const void *p) {
  uintptr_t a = (uintptr_t)p, bias = __atomic_load_n(&c->seg_bias, __ATOMIC_RELAXED);
  if (!(a & (EXM_PAGE - 1)) || (a & 15) || a - (uintptr_t)c->base >= c->cap || !bias) return 0;
  /* Segments are aligned in the address space (the range's base need not
   * be). The chunk, 16 bytes before p, is in p's segment: p is not page
   * aligned. */
  const uint64_t *bm = __atomic_load_n((uint64_t *const *)(bias + a / EXM_SEG_SIZE * sizeof(uint64_t *)), __ATOMIC_RELAXED);
  size_t in = (a & (EXM_SEG_SIZE - 1)) - 16, b = in >> 4;
  if (!bm || !((__atomic_load_n(&bm[b >> 6], __ATOMIC_RELAXED) >> (b & 63)) & 1)) return 0;
  /* the head of a live chunk, unless the program overran its predecessor:
   * a size that could take a later copy past the segment is refused */
  size_t head = __atomic_load_n(&EXM_CHUNK_OF(p)[1], __ATOMIC_RELAXED), size = head & ~(size_t)7;
  return (head & 2) && size >= 32 && size <= EXM_SEG_SIZE - 16 - in ? size : 0;
}

/* After a claim's swap (exm_core_claim_cached): is p's live bit still set?
 * p passed exm_core_small_peek, so its bitmap is there. */
static inline int exm_core_small_live_sc(const exm_core_t *c, const void *p) {
  uintptr_t a = (uintptr_t)p, bias = __atomic_load_n(&c->seg_bias, __ATOMIC_RELAXED);
  const uint64_t *bm = __atomic_load_n((uint64_t *const *)(bias + a / EXM_SEG_SIZE * sizeof(uint64_t *)), __ATOMIC_RELAXED);
  size_t b = ((a & (EXM_SEG_SIZE - 1)) - 16) >> 4;
  return bm && (__atomic_load_n(&bm[b >> 6], __ATOMIC_SEQ_CST) >> (b & 63)) & 1;
}

/* Is p inside the carved range? */
static inline int exm_core_owns(const exm_core_t *c, const void *p) {
  return (uintptr_t)p - (uintptr_t)c->base < c->cap;
}

#endif
