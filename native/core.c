/*
 * core.c: the carving core (see core.h for the contract).
 *
 * Page allocator. The carved part of the range, [0, top), is tiled by extents
 * kept in address order (prev/next), so coalescing is O(1) and never reads
 * the user's pages. Free extents sit in segregated bins, one set per free
 * state: exact bins for 1..31 pages, then 8 bins per power of two, with a
 * bitmap to find the first non-empty bin at or above a size (TLSF-style good
 * fit). Live blocks and segments are found by their offset in an
 * open-addressing hash table, which is also the always-on validity check of
 * a page block handed to free (a small chunk's is its segment's bitmap of
 * live chunk starts, below).
 *
 * Small allocator. dlmalloc's chunk format: each chunk starts with the size
 * of the previous chunk (only meaningful while that one is free) and its own
 * size with two flag bits, CINUSE (this chunk is live) and PINUSE (the
 * previous one is). A live chunk lends its successor's first word to its
 * payload, so the overhead is 8 bytes and the minimum chunk 32. Each 1 MiB
 * segment ends in a fencepost chunk that is always "in use", so coalescing
 * stops there without a bounds check.
 */
#include "core.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#define PINUSE ((size_t)1)
#define CINUSE ((size_t)2)
#define FLAGS ((size_t)7)
#define MIN_CHUNK ((size_t)32)
#define FENCE ((size_t)16)
#define NODE_SLAB ((size_t)64 * 1024)

typedef struct chunk {
  size_t prev_foot;   /* size of the previous chunk, valid while it is free */
  size_t head;        /* size | CINUSE | PINUSE */
  struct chunk *fd, *bk; /* bin links, while free */
} chunk_t;

/* Heads are read and written with relaxed atomics (plain moves on x86 and
 * arm64): the per-thread cache peeks at them without the lock
 * (exm_core_small_peek). Only the core writes them, under the lock (the
 * cache's mark is in the chunk's body: EXM_CACHED_WORD), so a change of
 * one bit is a load and a store, not a locked read-modify-write. */
#define HEAD(ch) __atomic_load_n(&(ch)->head, __ATOMIC_RELAXED)
#define SET_HEAD(ch, v) __atomic_store_n(&(ch)->head, (v), __ATOMIC_RELAXED)
#define HEAD_OR(ch, v) SET_HEAD(ch, HEAD(ch) | (v))
#define HEAD_AND(ch, v) SET_HEAD(ch, HEAD(ch) & (v))
#define csize(ch) (HEAD(ch) & ~FLAGS)
#define cat(ch, n) ((chunk_t *)((char *)(ch) + (n)))
#define cnext(ch) cat(ch, csize(ch))
#define c2mem(ch) ((void *)((char *)(ch) + 16))
#define mem2c(p) ((chunk_t *)((char *)(p) - 16))

static inline size_t align_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }
static inline uintptr_t addr(const exm_core_t *c, size_t off) { return (uintptr_t)c->base + off; }

/* ---- small message formatting (no printf: may be called under our lock) -- */

static void msg_put(char *msg, size_t len, const char *what, size_t value) {
  if (!msg || !len) return;
  size_t i = 0;
  while (*what && i + 1 < len) msg[i++] = *what++;
  char digits[24];
  int n = 0;
  do digits[n++] = (char)('0' + value % 10), value /= 10; while (value);
  if (i + 1 < len) msg[i++] = ' ';
  while (n && i + 1 < len) msg[i++] = digits[--n];
  msg[i] = 0;
}

/* ---- bookkeeping nodes ---------------------------------------------------- */

static exm_ext_t *node_new(exm_core_t *c) {
  if (!c->node_free) {
    exm_ext_t *slab = c->host.meta_map(c->host.ctx, NODE_SLAB);
    if (!slab) return NULL;
    for (size_t i = 0; i < NODE_SLAB / sizeof *slab; i++) {
      slab[i].fnext = c->node_free;
      c->node_free = &slab[i];
    }
  }
  exm_ext_t *e = c->node_free;
  c->node_free = e->fnext;
  memset(e, 0, sizeof *e);
  return e;
}

static void node_del(exm_core_t *c, exm_ext_t *e) {
  e->state = 0xff;
  e->fnext = c->node_free;
  c->node_free = e;
}

/* ---- segment bitmaps ------------------------------------------------------
 * Out of band, one bit per 16 bytes of a segment: set at the start of every
 * live chunk. A small free is only accepted where a bit is set, so a stale
 * pointer into memory that a later, larger chunk reuses is refused even
 * when the program's data there looks like a live chunk's header. */
#define BITMAP_BYTES (EXM_SEG_SIZE / 16 / 8)
#define BITMAP_SLAB ((size_t)64 * 1024)

static uint64_t *bitmap_new(exm_core_t *c) {
  if (!c->bitmap_free) {
    char *slab = c->host.meta_map(c->host.ctx, BITMAP_SLAB);
    if (!slab) return NULL;
    for (size_t i = 0; i < BITMAP_SLAB / BITMAP_BYTES; i++) {
      uint64_t *bm = (uint64_t *)(slab + i * BITMAP_BYTES);
      bm[0] = (uint64_t)(uintptr_t)c->bitmap_free;
      c->bitmap_free = bm;
    }
  }
  uint64_t *bm = c->bitmap_free;
  c->bitmap_free = (uint64_t *)(uintptr_t)bm[0];
  bm[0] = 0;
  return bm;
}

/* A segment's bitmap is all clear when it goes back: no chunk is live. */
static void bitmap_del(exm_core_t *c, uint64_t *bm) {
  bm[0] = (uint64_t)(uintptr_t)c->bitmap_free;
  c->bitmap_free = bm;
}

static inline size_t bit_of(const exm_core_t *c, const exm_ext_t *seg, const void *ch) {
  return ((uintptr_t)ch - ((uintptr_t)c->base + seg->off)) >> 4;
}
/* Bits change under the lock, and are read without it (exm_core_small_peek):
 * relaxed loads and stores, no read-modify-write. */
static inline void live_set(const exm_core_t *c, exm_ext_t *seg, const void *ch) {
  size_t b = bit_of(c, seg, ch);
  uint64_t *w = &seg->live[b >> 6];
  __atomic_store_n(w, __atomic_load_n(w, __ATOMIC_RELAXED) | 1ull << (b & 63), __ATOMIC_RELAXED);
}
static inline void live_clear(const exm_core_t *c, exm_ext_t *seg, const void *ch) {
  size_t b = bit_of(c, seg, ch);
  uint64_t *w = &seg->live[b >> 6];
  __atomic_store_n(w, __atomic_load_n(w, __ATOMIC_RELAXED) & ~(1ull << (b & 63)), __ATOMIC_RELAXED);
}

/* The slot in seg_live of the MiB of the address space holding range offset
 * off: segments are aligned in the address space, and the range's base may
 * not be (exm_core_small_peek finds the same slot through seg_bias). */
static inline size_t slot_of(const exm_core_t *c, size_t off) {
  return (addr(c, off) / EXM_SEG_SIZE) - (uintptr_t)c->base / EXM_SEG_SIZE;
}

/* The segment of seg becomes findable by a peek (bm) or stops being (NULL). */
static inline void slot_set(exm_core_t *c, const exm_ext_t *seg, uint64_t *bm) {
  __atomic_store_n(&c->seg_live[slot_of(c, seg->off)], bm, __ATOMIC_RELAXED);
}

/* seg_live, made at the first segment: 0 or ENOMEM. */
static int slots_make(exm_core_t *c) {
  if (c->seg_live) return 0;
  size_t slots = slot_of(c, c->cap - 1) + 1;
  uint64_t **tab = c->host.meta_map(c->host.ctx, align_up(slots * sizeof *tab, EXM_PAGE));
  if (!tab) return ENOMEM;
  c->seg_slots = slots;
  __atomic_store_n(&c->seg_live, tab, __ATOMIC_RELEASE);   /* with seg_slots: exm_arena_unlocked reads them unlocked */
  __atomic_store_n(&c->seg_bias, (uintptr_t)tab - (uintptr_t)c->base / EXM_SEG_SIZE * sizeof *tab, __ATOMIC_RELAXED);
  return 0;
}
static inline int live_test(const exm_core_t *c, const exm_ext_t *seg, const void *ch) {
  size_t b = bit_of(c, seg, ch);
  return (seg->live[b >> 6] >> (b & 63)) & 1;
}

/* ---- live-extent hash ----------------------------------------------------- */

static inline size_t hslot(size_t key, size_t mask) {
  uint64_t h = (uint64_t)key * 0x9E3779B97F4A7C15ull;
  return (size_t)(h ^ (h >> 29)) & mask;
}

static exm_ext_t *hash_get(const exm_core_t *c, size_t off) {
  if (!c->hcap) return NULL;
  size_t key = off / EXM_PAGE + 1, mask = c->hcap - 1;
  for (size_t i = hslot(key, mask);; i = (i + 1) & mask) {
    if (c->hkeys[i] == key) return c->hvals[i];
    if (!c->hkeys[i]) return NULL;
  }
}

static int hash_grow(exm_core_t *c) {
  size_t ncap = c->hcap ? c->hcap * 2 : 1024;
  size_t *nk = c->host.meta_map(c->host.ctx, ncap * sizeof *nk);
  exm_ext_t **nv = nk ? c->host.meta_map(c->host.ctx, ncap * sizeof *nv) : NULL;
  if (!nv) {
    if (nk) c->host.meta_unmap(c->host.ctx, nk, ncap * sizeof *nk);
    return ENOMEM;
  }
  for (size_t i = 0; i < c->hcap; i++) {
    if (!c->hkeys[i]) continue;
    size_t j = hslot(c->hkeys[i], ncap - 1);
    while (nk[j]) j = (j + 1) & (ncap - 1);
    nk[j] = c->hkeys[i];
    nv[j] = c->hvals[i];
  }
  if (c->hcap) {
    c->host.meta_unmap(c->host.ctx, c->hkeys, c->hcap * sizeof *nk);
    c->host.meta_unmap(c->host.ctx, c->hvals, c->hcap * sizeof *nv);
  }
  c->hkeys = nk;
  c->hvals = nv;
  c->hcap = ncap;
  return 0;
}

/* Callers make room first (hash_reserve), so a put never fails half-way. */
static int hash_reserve(exm_core_t *c) {
  return (c->hcount + 1) * 2 > c->hcap ? hash_grow(c) : 0;
}

static void hash_put(exm_core_t *c, exm_ext_t *e) {
  size_t key = e->off / EXM_PAGE + 1, mask = c->hcap - 1;
  size_t i = hslot(key, mask);
  while (c->hkeys[i]) i = (i + 1) & mask;
  c->hkeys[i] = key;
  c->hvals[i] = e;
  c->hcount++;
}

/* Linear probing with backward-shift deletion: no tombstones. */
static void hash_del(exm_core_t *c, size_t off) {
  size_t key = off / EXM_PAGE + 1, mask = c->hcap - 1;
  size_t i = hslot(key, mask);
  while (c->hkeys[i] != key) i = (i + 1) & mask;
  for (size_t j = (i + 1) & mask; c->hkeys[j]; j = (j + 1) & mask) {
    size_t home = hslot(c->hkeys[j], mask);
    /* move j into the hole at i unless its home lies cyclically in (i, j] */
    if (((j - home) & mask) >= ((j - i) & mask)) {
      c->hkeys[i] = c->hkeys[j];
      c->hvals[i] = c->hvals[j];
      i = j;
    }
  }
  c->hkeys[i] = 0;
  c->hvals[i] = NULL;
  c->hcount--;
}

/* ---- page bins ------------------------------------------------------------ */

static unsigned pbin_of(size_t pages) {
  if (pages < 32) return (unsigned)pages;
  unsigned b = 63u - (unsigned)__builtin_clzll(pages);
  return 32 + (b - 5) * 8 + (unsigned)((pages >> (b - 3)) & 7);
}

static void pbin_insert(exm_core_t *c, exm_ext_t *e) {
  int s = e->state;
  unsigned i = pbin_of(e->len / EXM_PAGE);
  e->bin = (uint16_t)i;
  e->fprev = NULL;
  e->fnext = c->pbin[s][i];
  if (e->fnext) e->fnext->fprev = e;
  c->pbin[s][i] = e;
  c->pmap[s][i / 64] |= 1ull << (i % 64);
}

static void pbin_remove(exm_core_t *c, exm_ext_t *e) {
  int s = e->state;
  unsigned i = e->bin;
  if (e->fprev) e->fprev->fnext = e->fnext;
  else c->pbin[s][i] = e->fnext;
  if (e->fnext) e->fnext->fprev = e->fprev;
  if (!c->pbin[s][i]) c->pmap[s][i / 64] &= ~(1ull << (i % 64));
}

static int first_set(const uint64_t *map, unsigned words, unsigned from) {
  for (unsigned w = from / 64; w < words; w++) {
    uint64_t bits = map[w];
    if (w == from / 64) bits &= ~0ull << (from % 64);
    if (bits) return (int)(w * 64 + (unsigned)__builtin_ctzll(bits));
  }
  return -1;
}

/* A free extent of state s that can hold len bytes at the given alignment. */
static exm_ext_t *pbin_find(exm_core_t *c, int s, size_t len, size_t align) {
  size_t need = len + (align > EXM_PAGE ? align - EXM_PAGE : 0);
  unsigned i = pbin_of(need / EXM_PAGE);
  int scanned = 0;
  for (exm_ext_t *e = c->pbin[s][i]; e && scanned < 32; e = e->fnext, scanned++) {
    size_t start = align_up(addr(c, e->off), align) - (uintptr_t)c->base;
    if (start + len <= e->off + e->len) return e;
  }
  int j = first_set(c->pmap[s], (EXM_PBINS + 63) / 64, i + 1);
  return j < 0 ? NULL : c->pbin[s][j];
}

/* ---- extents -------------------------------------------------------------- */

static void link_after(exm_core_t *c, exm_ext_t *at, exm_ext_t *e) {
  e->prev = at;
  e->next = at->next;
  if (at->next) at->next->prev = e;
  else c->last = e;
  at->next = e;
}

/* Merge free extent e (in no bin) with free neighbours of its own state. */
static exm_ext_t *coalesce(exm_core_t *c, exm_ext_t *e) {
  exm_ext_t *p = e->prev, *n = e->next;
  if (p && p->state == e->state) {
    pbin_remove(c, p);
    p->len += e->len;
    p->next = n;
    if (n) n->prev = p;
    else c->last = p;
    node_del(c, e);
    e = p;
  }
  n = e->next;
  if (n && n->state == e->state) {
    pbin_remove(c, n);
    e->len += n->len;
    e->next = n->next;
    if (n->next) n->next->prev = e;
    else c->last = e;
    node_del(c, n);
  }
  return e;
}

/* File free extent e (state set, in no bin): coalesce, return a clean tail
 * to the wilderness, else bin it. */
static void place_free(exm_core_t *c, exm_ext_t *e) {
  e = coalesce(c, e);
  if (e->state == EXT_CLEAN && e == c->last) {
    c->top = e->off;
    c->last = e->prev;
    if (e->prev) e->prev->next = NULL;
    node_del(c, e);
    return;
  }
  pbin_insert(c, e);
}

static void decommit(exm_core_t *c, size_t off, size_t len) {
  c->host.decommit(c->host.ctx, off, len);
  c->st.committed -= len;
  c->st.punched += len;
}

/* Give back the disk of every DIRTY extent. DIRTY extents never touch each
 * other (they are coalesced), so this only merges into clean bins. */
static void release_empty_segments(exm_core_t *c);

/* Gives back the disk of one retained DIRTY extent; it is free and CLEAN after. */
static void clean_dirty(exm_core_t *c, exm_ext_t *e) {
  pbin_remove(c, e);
  decommit(c, e->off, e->len);
  c->dirty_bytes -= e->len;
  e->state = EXT_CLEAN;
  place_free(c, e);
}

void exm_core_flush(exm_core_t *c) {
  int i;
  release_empty_segments(c);
  while ((i = first_set(c->pmap[EXT_DIRTY], (EXM_PBINS + 63) / 64, 0)) >= 0) {
    clean_dirty(c, c->pbin[EXT_DIRTY][i]);
  }
}

static int last_set(const uint64_t *map, unsigned words) {
  for (unsigned w = words; w-- > 0;)
    if (map[w]) return (int)(w * 64 + 63 - (unsigned)__builtin_clzll(map[w]));
  return -1;
}

size_t exm_core_retain_limit(const exm_core_t *c) {
  size_t quarter = c->st.live_bytes / 4;
  return quarter > c->dirty_limit ? quarter : c->dirty_limit;
}

/* Over the retention limit: give back the disk of the largest DIRTY extents
 * until half the limit is retained. Flushing everything would leave nothing
 * to reuse, so that the next blocks each reserve disk again and the next
 * frees each punch again (a system call apiece, under the lock: at threshold
 * 0 most of the time of a churn of 4-64 KiB blocks on a busy disk); the
 * largest first gives back the most disk per call. */
static void flush_half(exm_core_t *c) {
  int i;
  size_t keep = exm_core_retain_limit(c) / 2;
  release_empty_segments(c);
  while (c->dirty_bytes > keep && (i = last_set(c->pmap[EXT_DIRTY], (EXM_PBINS + 63) / 64)) >= 0) {
    clean_dirty(c, c->pbin[EXT_DIRTY][i]);
  }
}

/* Reserve disk for [off, off+len). It never flushes DIRTY extents itself:
 * that would coalesce extents the caller is holding. Callers that fail with
 * DIRTY bytes around flush and start over (see retry_after_flush). */
static int commit(exm_core_t *c, size_t off, size_t len) {
  if (c->max_commit && c->st.committed + len > c->max_commit) return ENOMEM;
  if (c->host.commit(c->host.ctx, off, len)) return ENOMEM;
  c->st.committed += len;
  if (c->st.committed > c->st.peak_committed) c->st.peak_committed = c->st.committed;
  return 0;
}

/* After a failed commit: give back retained disk (a full disk or the cap may
 * have been reached because of it); 1 if that freed anything worth a retry. */
static int retry_after_flush(exm_core_t *c) {
  if (!c->dirty_bytes) return 0;
  exm_core_flush(c);
  return 1;
}

/* Turn [start, start+len) of free extent e (already out of its bin and, if it
 * was clean, committed) into a used extent; the rest goes back to bins. */
static exm_ext_t *carve(exm_core_t *c, exm_ext_t *e, size_t start, size_t len,
                        exm_ext_t *lead, exm_ext_t *tail) {
  int s = e->state;
  if (start > e->off) {
    lead->off = e->off;
    lead->len = start - e->off;
    lead->state = (uint8_t)s;
    lead->prev = e->prev;
    lead->next = e;
    if (e->prev) e->prev->next = lead;
    e->prev = lead;
    e->off = start;
    e->len -= lead->len;
    pbin_insert(c, lead);
  } else {
    node_del(c, lead);
  }
  if (e->len > len) {
    tail->off = start + len;
    tail->len = e->len - len;
    tail->state = (uint8_t)s;
    link_after(c, e, tail);
    e->len = len;
    pbin_insert(c, tail);
  } else {
    node_del(c, tail);
  }
  if (s == EXT_DIRTY) c->dirty_bytes -= len;
  e->state = EXT_USED;
  e->advice = 0;
  return e;
}

/* Allocate a page extent of len bytes (page multiple) at `align` (power of
 * two, >= EXM_PAGE). *dirty tells whether it may hold old data. */
static exm_ext_t *page_alloc_once(exm_core_t *c, size_t len, size_t align, int zero, int *dirty, int *err) {
  *err = ENOMEM;
  if (hash_reserve(c)) return NULL;
  exm_ext_t *lead = node_new(c), *tail = lead ? node_new(c) : NULL;
  exm_ext_t *extra = tail ? node_new(c) : NULL;
  if (!extra) {
    if (lead) node_del(c, lead);
    if (tail) node_del(c, tail);
    return NULL;
  }
  exm_ext_t *e = NULL;
  /* Reuse retained disk first (no system call), unless zeros are wanted. */
  if (!zero && (e = pbin_find(c, EXT_DIRTY, len, align))) {
    *dirty = 1;
  } else if ((e = pbin_find(c, EXT_CLEAN, len, align))) {
    size_t start = align_up(addr(c, e->off), align) - (uintptr_t)c->base;
    if ((*err = commit(c, start, len))) goto fail;
    *dirty = 0;
  } else {
    /* Extend the carved range, through a clean last extent if there is one. */
    exm_ext_t *l = c->last;
    size_t from = (l && l->state == EXT_CLEAN) ? l->off : c->top;
    size_t start = align_up(addr(c, from), align) - (uintptr_t)c->base;
    if (start < from || start > c->cap || len > c->cap - start) { *err = ENOMEM; goto fail; }
    /* Small blocks reserve disk a megabyte at a time: a filesystem can take
     * 100 us per fallocate. The rest is retained (DIRTY) for the next ones. */
    size_t ahead = 0;
    if (!zero && len < EXM_SEG_SIZE) {
      size_t want = EXM_SEG_SIZE - len;
      if (want <= c->cap - start - len && c->dirty_bytes + want <= c->dirty_limit &&
          commit(c, start, len + want) == 0)
        ahead = want;
    }
    if (!ahead && (*err = commit(c, start, len))) goto fail;
    if (from == c->top) {
      e = extra, extra = NULL;
      e->off = c->top;
      e->state = EXT_CLEAN;
      e->prev = l;
      e->next = NULL;
      if (l) l->next = e;
      c->last = e;
    } else {
      e = l;
      pbin_remove(c, e);
    }
    e->len = start + len + ahead - e->off;
    c->top = start + len + ahead;
    if (c->top > c->st.top_peak) c->st.top_peak = c->top;
    *dirty = 0;
    e = carve(c, e, start, len, lead, tail);
    if (ahead) {          /* the reserved tail carve left clean is retained disk */
      exm_ext_t *t = e->next;
      pbin_remove(c, t);
      t->state = EXT_DIRTY;
      c->dirty_bytes += t->len;
      pbin_insert(c, t);
    }
    goto done;
  }
  pbin_remove(c, e);
  size_t start = align_up(addr(c, e->off), align) - (uintptr_t)c->base;
  e = carve(c, e, start, len, lead, tail);
done:
  if (extra) node_del(c, extra);
  hash_put(c, e);
  *err = 0;
  return e;
fail:
  node_del(c, lead);
  node_del(c, tail);
  node_del(c, extra);
  return NULL;
}

static exm_ext_t *page_alloc(exm_core_t *c, size_t len, size_t align, int zero, int *dirty, int *err) {
  exm_ext_t *e = page_alloc_once(c, len, align, zero, dirty, err);
  if (!e && retry_after_flush(c)) e = page_alloc_once(c, len, align, zero, dirty, err);
  return e;
}

/* Free a used or segment extent (already out of the hash). */
static void page_free(exm_core_t *c, exm_ext_t *e) {
  if (e->len > c->retain_max) {
    decommit(c, e->off, e->len);
    e->state = EXT_CLEAN;
  } else {
    c->dirty_bytes += e->len;
    e->state = EXT_DIRTY;
  }
  place_free(c, e);
  if (c->dirty_bytes > exm_core_retain_limit(c)) flush_half(c);
}

/* ---- small chunks --------------------------------------------------------- */

static unsigned sbin_of(size_t sz) {
  if (sz < 1024) return (unsigned)(sz >> 4);
  unsigned b = 63u - (unsigned)__builtin_clzll(sz);
  return 64 + (b - 10) * 8 + (unsigned)((sz >> (b - 3)) & 7);
}

static void sbin_insert(exm_core_t *c, chunk_t *ch) {
  unsigned i = sbin_of(csize(ch));
  chunk_t *h = c->sbin[i];
  ch->bk = NULL;
  ch->fd = h;
  if (h) h->bk = ch;
  c->sbin[i] = ch;
  c->smap[i / 64] |= 1ull << (i % 64);
}

static void sbin_remove(exm_core_t *c, chunk_t *ch) {
  unsigned i = sbin_of(csize(ch));
  if (ch->bk) ch->bk->fd = ch->fd;
  else c->sbin[i] = ch->fd;
  if (ch->fd) ch->fd->bk = ch->bk;
  if (!c->sbin[i]) c->smap[i / 64] &= ~(1ull << (i % 64));
}

static inline int whole_segment(const chunk_t *ch) {
  return ((uintptr_t)ch & (EXM_SEG_SIZE - 1)) == 0 && csize(ch) == EXM_SEG_SIZE - FENCE;
}

static chunk_t *sbin_find(exm_core_t *c, size_t sz) {
  unsigned i = sbin_of(sz);
  int scanned = 0;
  for (chunk_t *ch = c->sbin[i]; ch && scanned < 16; ch = ch->fd, scanned++)
    if (csize(ch) >= sz) return ch;
  int j = first_set(c->smap, (EXM_SBINS + 63) / 64, i + 1);
  return j < 0 ? NULL : c->sbin[j];
}

static int new_segment(exm_core_t *c, int *err) {
  int dirty;
  if ((*err = slots_make(c))) return -1;
  uint64_t *bm = bitmap_new(c);
  if (!bm) return *err = ENOMEM, -1;
  exm_ext_t *e = page_alloc(c, EXM_SEG_SIZE, EXM_SEG_SIZE, 0, &dirty, err);
  if (!e) {
    bitmap_del(c, bm);
    return -1;
  }
  e->state = EXT_SEG;
  e->live = bm;
  chunk_t *ch = (chunk_t *)addr(c, e->off);
  SET_HEAD(ch, (EXM_SEG_SIZE - FENCE) | PINUSE);
  chunk_t *fence = cat(ch, EXM_SEG_SIZE - FENCE);
  fence->prev_foot = EXM_SEG_SIZE - FENCE;
  SET_HEAD(fence, FENCE | CINUSE);
  sbin_insert(c, ch);
  slot_set(c, e, bm);
  c->seg_count++;
  c->seg_empty++;
  return 0;
}

/* Split the tail of live chunk ch beyond sz into a free chunk. The chunk
 * after ch must be live (its PINUSE is cleared here). */
static void split_tail(exm_core_t *c, chunk_t *ch, size_t sz) {
  size_t rem = csize(ch) - sz;
  if (rem < MIN_CHUNK) return;
  SET_HEAD(ch, sz | (HEAD(ch) & FLAGS));
  chunk_t *r = cat(ch, sz);
  SET_HEAD(r, rem | PINUSE);
  chunk_t *n = cat(r, rem);
  n->prev_foot = rem;
  HEAD_AND(n, ~PINUSE);
  sbin_insert(c, r);
}

#define chunk_size_for exm_core_chunk_size_for

static void *small_alloc(exm_core_t *c, size_t n, size_t align, int *err) {
  size_t sz = chunk_size_for(n);
  size_t want = align > 16 ? sz + align + MIN_CHUNK : sz;
  chunk_t *ch = sbin_find(c, want);
  if (!ch) {
    if (new_segment(c, err)) return NULL;
    ch = sbin_find(c, want);
  }
  sbin_remove(c, ch);
  if (whole_segment(ch)) c->seg_empty--;
  /* ch is free: its successor is live with PINUSE clear. Mark ch live. */
  SET_HEAD(ch, HEAD(ch) | CINUSE);
  HEAD_OR(cnext(ch), PINUSE);
  if (align > 16) {
    uintptr_t mem = align_up((uintptr_t)c2mem(ch), align);
    if (mem != (uintptr_t)c2mem(ch) && mem - (uintptr_t)c2mem(ch) < MIN_CHUNK) mem += align;
    size_t lead = mem - (uintptr_t)c2mem(ch);
    if (lead) {
      /* ch's predecessor is live (free chunks never touch), so the lead
       * becomes a free chunk of its own. */
      size_t total = csize(ch);
      chunk_t *a = mem2c((void *)mem);
      SET_HEAD(ch, lead | (HEAD(ch) & PINUSE));
      a->prev_foot = lead;
      SET_HEAD(a, (total - lead) | CINUSE);
      sbin_insert(c, ch);
      ch = a;
    }
  }
  split_tail(c, ch, sz);
  live_set(c, hash_get(c, ((uintptr_t)ch & ~(EXM_SEG_SIZE - 1)) - (uintptr_t)c->base), ch);
  c->st.live_bytes += csize(ch) - 8;
  return c2mem(ch);
}

/* Validate a pointer into a segment: the chunk must be live and well formed. */
static chunk_t *small_check(const exm_core_t *c, const exm_ext_t *seg, const void *p) {
  uintptr_t lo = addr(c, seg->off), hi = lo + seg->len - FENCE;
  chunk_t *ch = mem2c(p);
  if (((uintptr_t)p & 15) || (uintptr_t)ch < lo || (uintptr_t)ch >= hi) return NULL;
  size_t sz = csize(ch);
  if (!(HEAD(ch) & CINUSE) || sz < MIN_CHUNK || (sz & 15) || sz > hi - (uintptr_t)ch) return NULL;
  if (!(HEAD(cnext(ch)) & PINUSE) || !live_test(c, seg, ch) || exm_core_is_cached(c, p)) return NULL;
  return ch;
}

/* The free side of exm_core_claim_cached (core.h): ch's live bit cleared,
 * then its mark word read, both sequentially consistent. 0, or -1 (the bit
 * set again) when a cache claimed the chunk meanwhile: a free on another
 * thread raced this one. */
static int small_unlive(const exm_core_t *c, exm_ext_t *seg, chunk_t *ch) {
  size_t b = bit_of(c, seg, ch);
  uint64_t *w = &seg->live[b >> 6], old = __atomic_load_n(w, __ATOMIC_RELAXED);
  __atomic_store_n(w, old & ~(1ull << (b & 63)), __ATOMIC_SEQ_CST);
  if (__atomic_load_n(EXM_CACHED_WORD(c2mem(ch)), __ATOMIC_SEQ_CST) != exm_core_cache_mark(c, c2mem(ch))) return 0;
  __atomic_store_n(w, old, __ATOMIC_RELAXED);
  return -1;
}

/* Give back ch, whose live bit is clear (a free: small_unlive; a tail cut
 * off a live chunk: live_clear). */
static void small_release(exm_core_t *c, chunk_t *ch, exm_ext_t *seg) {
  size_t sz = csize(ch);
  SET_HEAD(ch, HEAD(ch) & ~CINUSE);
  if (!(HEAD(ch) & PINUSE)) {
    chunk_t *p = cat(ch, -(ptrdiff_t)ch->prev_foot);
    sbin_remove(c, p);
    sz += csize(p);
    SET_HEAD(p, sz | (HEAD(p) & PINUSE));
    ch = p;
  }
  chunk_t *n = cat(ch, sz);
  if (!(HEAD(n) & CINUSE)) {
    sbin_remove(c, n);
    sz += csize(n);
    SET_HEAD(ch, sz | (HEAD(ch) & PINUSE));
    n = cat(ch, sz);
  }
  n->prev_foot = sz;
  HEAD_AND(n, ~PINUSE);
  if (whole_segment(ch)) {
    if (c->seg_empty >= 1) {    /* keep one empty segment to damp churn */
      slot_set(c, seg, NULL);   /* no longer a segment */
      bitmap_del(c, seg->live);
      seg->live = NULL;
      hash_del(c, seg->off);
      c->seg_count--;
      page_free(c, seg);
      return;
    }
    c->seg_empty++;
  }
  sbin_insert(c, ch);
}

/* The spare empty segments go back to the page allocator (as DIRTY). */
static void release_empty_segments(exm_core_t *c) {
  unsigned i = sbin_of(EXM_SEG_SIZE - FENCE);
  chunk_t *ch = c->sbin[i];
  while (c->seg_empty && ch) {
    chunk_t *next = ch->fd;
    if (whole_segment(ch)) {
      exm_ext_t *seg = hash_get(c, (uintptr_t)ch - (uintptr_t)c->base);
      sbin_remove(c, ch);
      slot_set(c, seg, NULL);
      bitmap_del(c, seg->live);
      seg->live = NULL;
      hash_del(c, seg->off);
      c->seg_empty--;
      c->seg_count--;
      c->dirty_bytes += seg->len;
      seg->state = EXT_DIRTY;
      place_free(c, seg);
    }
    ch = next;
  }
}

/* ---- lookup --------------------------------------------------------------- */

/* The used extent starting at p, or the segment holding p; NULL if neither. */
static exm_ext_t *lookup(const exm_core_t *c, const void *p) {
  if (!exm_core_owns(c, p)) return NULL;
  size_t off = (uintptr_t)p - (uintptr_t)c->base;
  exm_ext_t *e = hash_get(c, off & ~(EXM_PAGE - 1));
  if (e) {
    if (e->state == EXT_SEG) return e;
    return e->off == off ? e : NULL;
  }
  uintptr_t seg = (uintptr_t)p & ~(EXM_SEG_SIZE - 1);
  if (seg < (uintptr_t)c->base) return NULL;
  e = hash_get(c, seg - (uintptr_t)c->base);
  return e && e->state == EXT_SEG ? e : NULL;
}

exm_ext_t *exm_core_block(exm_core_t *c, const void *p) {
  exm_ext_t *e = lookup(c, p);
  return e && e->state == EXT_USED ? e : NULL;
}

void exm_core_clear_advice(exm_core_t *c) {
  for (exm_ext_t *e = c->last; e; e = e->prev) e->advice = 0;
}

int exm_core_large(exm_core_t *c, size_t min, size_t *offs, size_t *lens, int max) {
  int n = 0;
  for (exm_ext_t *e = c->last; e && n < max; e = e->prev)
    if (e->state == EXT_USED && e->len >= min && (e->advice == EXM_EXT_ADVICE_NONE || EXM_EXT_ADVICE_IS_AUTO(e->advice))) {
      offs[n] = e->off;
      lens[n++] = e->len;
    }
  return n;
}

/* ---- public core entry points --------------------------------------------- */

/* base and cap are read without the lock (exm_arena_of, on every free):
 * they are written last, cap after base, so a concurrent reader sees either
 * no range or the whole one. */
void exm_core_init(exm_core_t *c, void *base, size_t cap, const exm_host_t *host) {
  memset((char *)c + offsetof(exm_core_t, top), 0, sizeof *c - offsetof(exm_core_t, top));
  c->host = *host;
  c->retain_max = (size_t)1 << 20;
  c->dirty_limit = (size_t)16 << 20;
  exm_core_set_key(c, (uint64_t)(uintptr_t)c * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)base);
  __atomic_store_n(&c->base, (char *)base, __ATOMIC_RELAXED);
  __atomic_store_n(&c->cap, cap & ~(EXM_PAGE - 1), __ATOMIC_RELEASE);
}

void *exm_core_alloc(exm_core_t *c, size_t n, size_t align, int flags, int *dirty, int *err) {
  void *p = NULL;
  if (align < 16) align = 16;
  if (n < EXM_SMALL_MAX && align < EXM_PAGE) {
    *dirty = 1;
    p = small_alloc(c, n, align, err);
  } else {
    if (n > c->cap || align > c->cap) { *err = ENOMEM; goto out; }
    size_t len = align_up(n ? n : 1, EXM_PAGE);
    exm_ext_t *e = page_alloc(c, len, align < EXM_PAGE ? EXM_PAGE : align, flags & EXM_CORE_ZERO, dirty, err);
    if (e) {
      c->st.live_bytes += len;
      p = (void *)addr(c, e->off);
    }
  }
out:
  if (p) {
    c->st.live_blocks++;
    c->st.total_allocs++;
    if (c->st.live_bytes > c->st.peak_live_bytes) c->st.peak_live_bytes = c->st.live_bytes;
  } else {
    c->st.failures++;
  }
  return p;
}

int exm_core_free(exm_core_t *c, void *p) { return exm_core_free_begin(c, p, NULL); }

void exm_core_set_host(exm_core_t *c, const exm_host_t *host) { c->host = *host; }

void exm_core_set_key(exm_core_t *c, uint64_t seed) {
  /* splitmix64's finaliser: every bit of the seed moves every bit of the key */
  seed ^= seed >> 30, seed *= 0xbf58476d1ce4e5b9ull;
  seed ^= seed >> 27, seed *= 0x94d049bb133111ebull;
  seed ^= seed >> 31;
  c->cache_key = (uintptr_t)(seed | 1ull << 63 | 1);
}
void exm_core_set_max_commit(exm_core_t *c, size_t bytes) { c->max_commit = bytes; }

size_t exm_core_shrink(exm_core_t *c, size_t cap) {
  size_t keep = align_up(c->top, EXM_SEG_SIZE);   /* [top, cap) is clean: nothing there */
  cap &= ~(EXM_SEG_SIZE - 1);
  if (cap < keep) cap = keep;
  if (cap < c->cap) __atomic_store_n(&c->cap, cap, __ATOMIC_RELEASE);
  return c->cap;
}
const exm_core_stats_t *exm_core_stats(const exm_core_t *c) { return &c->st; }

void exm_core_free_decommit(exm_core_t *c, const exm_ext_t *busy) {
  c->host.decommit(c->host.ctx, busy->off, busy->len);
}

void exm_core_free_end(exm_core_t *c, exm_ext_t *e) {
  c->st.committed -= e->len;
  c->st.punched += e->len;
  e->state = EXT_CLEAN;
  place_free(c, e);
}

int exm_core_free_begin(exm_core_t *c, void *p, exm_ext_t **busy) {
  exm_ext_t *e = lookup(c, p);
  if (busy) *busy = NULL;
  if (!e) return -1;
  if (e->state == EXT_SEG) {
    chunk_t *ch = small_check(c, e, p);
    if (!ch || small_unlive(c, e, ch)) return -1;
    c->st.live_bytes -= csize(ch) - 8;
    small_release(c, ch, e);
  } else {
    hash_del(c, e->off);
    c->st.live_bytes -= e->len;
    if (busy && e->len > c->retain_max) {
      e->state = EXT_BUSY;
      *busy = e;
    } else {
      page_free(c, e);
    }
  }
  c->st.live_blocks--;
  c->st.total_frees++;
  return 0;
}

size_t exm_core_usable(exm_core_t *c, const void *p) {
  exm_ext_t *e = lookup(c, p);
  if (!e) return 0;
  if (e->state == EXT_USED) return e->len;
  chunk_t *ch = small_check(c, e, p);
  return ch ? csize(ch) - 8 : 0;
}

static int small_resize(exm_core_t *c, exm_ext_t *seg, void *p, size_t n) {
  chunk_t *ch = small_check(c, seg, p);
  if (!ch) return -1;
  if (n >= EXM_SMALL_MAX) return ENOMEM;
  size_t sz = csize(ch), want = chunk_size_for(n);
  if (want <= sz) {
    if (sz - want < MIN_CHUNK) return 0;
    /* Cut the tail off as a live chunk and release it: that coalesces it. */
    SET_HEAD(ch, want | (HEAD(ch) & FLAGS));
    chunk_t *r = cat(ch, want);
    SET_HEAD(r, (sz - want) | PINUSE | CINUSE);
    c->st.live_bytes -= sz - want;
    live_clear(c, seg, r);      /* never set: as before, in case */
    small_release(c, r, seg);
    return 0;
  }
  chunk_t *nx = cat(ch, sz);
  if ((HEAD(nx) & CINUSE) || sz + csize(nx) < want) return ENOMEM;
  sbin_remove(c, nx);
  size_t total = sz + csize(nx);
  SET_HEAD(ch, total | (HEAD(ch) & FLAGS));
  HEAD_OR(cnext(ch), PINUSE);
  split_tail(c, ch, want);
  c->st.live_bytes += csize(ch) - sz;
  if (c->st.live_bytes > c->st.peak_live_bytes) c->st.peak_live_bytes = c->st.live_bytes;
  return 0;
}

static int page_resize(exm_core_t *c, exm_ext_t *e, size_t n);

/* page_resize's "the disk could not be reserved" (a full disk or the cap),
 * told apart from "no room next to the block": only the first is worth
 * giving back retained disk for. Before, every growth that had to move
 * flushed every DIRTY extent (a punch apiece), which the next blocks then
 * reserved again: 1038 fallocates for 10 000 reallocs of a growth loop. */
#define NO_DISK (-2)

int exm_core_resize(exm_core_t *c, void *p, size_t n) {
  exm_ext_t *e = lookup(c, p);
  if (!e) return -1;
  if (e->state == EXT_SEG) return small_resize(c, e, p, n);
  int err = page_resize(c, e, n);
  if (err == NO_DISK && retry_after_flush(c)) err = page_resize(c, e, n);
  return err == NO_DISK ? ENOMEM : err;
}

/* Slack reserved past a block that grows in place into clean space: the
 * next growth steps of a block that keeps growing (a vector, a buffer
 * appended to) find retained disk next to it and take it without a system
 * call, instead of one fallocate per page crossed. Half the new length
 * (geometric: O(log) reservations for a block grown to any size), at most
 * what the clean space holds and what the retention limit leaves room for;
 * it is an ordinary DIRTY extent, so it is counted, bounded and reused like
 * any retained disk (another block may take it; then this one moves). */
static size_t growth_slack(const exm_core_t *c, size_t len, size_t room) {
  size_t slack = align_up(len / 2, EXM_PAGE);
  if (slack > room) slack = room;
  if (c->dirty_bytes + slack > c->dirty_limit / 2) slack = 0;
  return slack;
}

/* File [off, off+len), just committed, after e as a DIRTY extent (node t);
 * it may touch retained disk beyond, so it is coalesced. */
static void retain_after(exm_core_t *c, exm_ext_t *e, exm_ext_t *t, size_t off, size_t len) {
  t->off = off;
  t->len = len;
  t->state = EXT_DIRTY;
  link_after(c, e, t);
  c->dirty_bytes += len;
  pbin_insert(c, coalesce(c, t));
}

/* Reserve the extra bytes of a growth at off, and *slack more past them
 * when a node for the slack can be had (returned in *t) and the disk takes
 * it; without the slack when it does not. 0, or NO_DISK. */
static int reserve_growth(exm_core_t *c, size_t off, size_t extra, size_t *slack, exm_ext_t **t) {
  *t = *slack ? node_new(c) : NULL;
  if (*t && commit(c, off, extra + *slack) == 0) return 0;
  if (*t) node_del(c, *t), *t = NULL;
  *slack = 0;
  return commit(c, off, extra) ? NO_DISK : 0;
}

/* Give the first `take` bytes of free extent nx (e's successor, out of its
 * bin) to e's growth: nx shrinks, or goes when nothing is left of it. */
static void take_from_next(exm_core_t *c, exm_ext_t *e, exm_ext_t *nx, size_t take) {
  if (nx->len > take) {
    nx->off += take;
    nx->len -= take;
    pbin_insert(c, nx);
    return;
  }
  e->next = nx->next;
  if (nx->next) nx->next->prev = e;
  else c->last = e;
  node_del(c, nx);
}

static int page_resize(exm_core_t *c, exm_ext_t *e, size_t n) {
  if (n < EXM_SMALL_MAX / 2) return ENOMEM;    /* too small for a page block: move it */
  size_t len = align_up(n, EXM_PAGE);
  if (n > c->cap) return ENOMEM;
  if (len == e->len) return 0;
  if (len < e->len) {
    exm_ext_t *t = node_new(c);
    if (!t) return ENOMEM;
    t->off = e->off + len;
    t->len = e->len - len;
    link_after(c, e, t);
    e->len = len;
    c->st.live_bytes -= t->len;
    page_free(c, t);
    return 0;
  }
  size_t extra = len - e->len, end = e->off + len, slack = 0;
  exm_ext_t *nx = e->next, *t = NULL;
  if (nx && nx->state == EXT_DIRTY && nx->len >= extra) {
    pbin_remove(c, nx);
    c->dirty_bytes -= extra;
    take_from_next(c, e, nx, extra);
  } else if (nx && nx->state == EXT_CLEAN && nx != c->last && nx->len >= extra) {
    slack = growth_slack(c, len, nx->len - extra);
    if (reserve_growth(c, nx->off, extra, &slack, &t)) return NO_DISK;
    pbin_remove(c, nx);
    take_from_next(c, e, nx, extra + slack);
  } else if (!nx || (nx->state == EXT_CLEAN && nx == c->last)) {
    /* Grow into the wilderness (through a clean last extent). */
    if (end > c->cap || end < e->off) return ENOMEM;
    slack = growth_slack(c, len, c->cap - end);
    if (reserve_growth(c, e->off + e->len, extra, &slack, &t)) return NO_DISK;
    if (nx) {
      pbin_remove(c, nx);
      node_del(c, nx);
    }
    e->next = NULL;
    c->last = e;
    c->top = end + slack;
    if (c->top > c->st.top_peak) c->st.top_peak = c->top;
  } else {
    return ENOMEM;
  }
  e->len = len;
  if (slack) retain_after(c, e, t, end, slack);
  c->st.live_bytes += extra;
  if (c->st.live_bytes > c->st.peak_live_bytes) c->st.peak_live_bytes = c->st.live_bytes;
  return 0;
}

int exm_core_find(exm_core_t *c, const void *p, void **base, size_t *size, exm_ext_t **ext) {
  if (!exm_core_owns(c, p)) return 0;
  size_t off = (uintptr_t)p - (uintptr_t)c->base;
  exm_ext_t *e = exm_core_block(c, p);     /* the usual question: a block's start, O(1) */
  if (e) {
    *base = (void *)p;
    *size = e->len;
    if (ext) *ext = e;
    return 1;
  }
  e = c->last;                             /* an interior pointer: walk */
  while (e && e->off > off) e = e->prev;
  if (!e || off >= e->off + e->len) return 0;
  if (e->state == EXT_USED) {
    *base = (void *)addr(c, e->off);
    *size = e->len;
    if (ext) *ext = e;
    return 1;
  }
  if (e->state != EXT_SEG) return 0;
  chunk_t *ch = (chunk_t *)addr(c, e->off), *end = cat(ch, e->len - FENCE);
  for (; ch < end; ch = cnext(ch)) {
    if ((uintptr_t)p < (uintptr_t)c2mem(ch)) return 0;     /* in a header */
    if ((uintptr_t)p < (uintptr_t)cnext(ch) + 8) {
      if (!(HEAD(ch) & CINUSE)) return 0;
      *base = c2mem(ch);
      *size = csize(ch) - 8;
      if (ext) *ext = NULL;
      return 1;
    }
  }
  return 0;
}

void exm_core_clear_cached(exm_core_t *c) {
  for (exm_ext_t *e = c->last; e; e = e->prev) {
    if (e->state != EXT_SEG) continue;
    chunk_t *ch = (chunk_t *)addr(c, e->off), *end = cat(ch, e->len - FENCE);
    for (; ch < end; ch = cnext(ch))
      if ((HEAD(ch) & CINUSE) && exm_core_is_cached(c, c2mem(ch))) exm_core_unmark_cached(c2mem(ch));
  }
}

int exm_core_walk(exm_core_t *c, int (*fn)(void *ctx, size_t off, size_t len, int state), void *ctx) {
  exm_ext_t *e = c->last;
  while (e && e->prev) e = e->prev;
  for (; e; e = e->next) {
    if (e->state == EXT_CLEAN || e->state == EXT_BUSY) continue;
    int r = fn(ctx, e->off, e->len, e->state);
    if (r) return r;
  }
  return 0;
}

/* ---- consistency walk ----------------------------------------------------- */

#define FAIL(what, v) do { msg_put(msg, msglen, what, (size_t)(v)); return -1; } while (0)

static int check_segment(exm_core_t *c, exm_ext_t *e, size_t *live, size_t *nfree, size_t *empty,
                         char *msg, size_t msglen) {
  chunk_t *ch = (chunk_t *)addr(c, e->off), *end = cat(ch, e->len - FENCE);
  if ((uintptr_t)ch & (EXM_SEG_SIZE - 1)) FAIL("segment misaligned at offset", e->off);
  if (!(HEAD(ch) & PINUSE)) FAIL("segment's first chunk lacks PINUSE at offset", e->off);
  int prev_inuse = 1;
  size_t prev_size = 0, nlive = 0;
  if (!e->live) FAIL("segment without a live-chunk bitmap at offset", e->off);
  if (!c->seg_live || c->seg_live[slot_of(c, e->off)] != e->live)
    FAIL("segment's slot does not hold its bitmap at offset", e->off);
  while (ch < end) {
    size_t sz = csize(ch);
    if (sz < MIN_CHUNK || (sz & 15) || sz > (size_t)((char *)end - (char *)ch))
      FAIL("bad chunk size at offset", (uintptr_t)ch - (uintptr_t)c->base);
    if (!!(HEAD(ch) & PINUSE) != prev_inuse)
      FAIL("PINUSE disagrees with predecessor at offset", (uintptr_t)ch - (uintptr_t)c->base);
    if (!prev_inuse && ch->prev_foot != prev_size)
      FAIL("bad boundary tag at offset", (uintptr_t)ch - (uintptr_t)c->base);
    int inuse = !!(HEAD(ch) & CINUSE);
    if (inuse != live_test(c, e, ch))
      FAIL("live-chunk bitmap disagrees with the chunk at offset", (uintptr_t)ch - (uintptr_t)c->base);
    if (!inuse && !prev_inuse) FAIL("two free chunks touch at offset", (uintptr_t)ch - (uintptr_t)c->base);
    if (inuse) *live += sz - 8, nlive++;
    else {
      (*nfree)++;
      if (whole_segment(ch)) (*empty)++;
    }
    prev_inuse = inuse;
    prev_size = sz;
    ch = cat(ch, sz);
  }
  if (ch != end || !(HEAD(end) & CINUSE) || csize(end) != FENCE) FAIL("bad fencepost in segment at offset", e->off);
  size_t bits = 0;
  for (size_t w = 0; w < BITMAP_BYTES / 8; w++) bits += (size_t)__builtin_popcountll(e->live[w]);
  if (bits != nlive) FAIL("live-chunk bitmap has stray bits in segment at offset", e->off);
  if (!!(HEAD(end) & PINUSE) != prev_inuse) FAIL("fencepost PINUSE wrong in segment at offset", e->off);
  if (!prev_inuse && end->prev_foot != prev_size) FAIL("fencepost boundary tag wrong at offset", e->off);
  return 0;
}

int exm_core_check(exm_core_t *c, char *msg, size_t msglen) {
  size_t off = c->top, nused = 0, nfree = 0, dirty = 0, committed = 0, live = 0;
  size_t sfree = 0, sempty = 0, nseg = 0;
  exm_ext_t *e = c->last;
  if (c->top > c->cap) FAIL("top beyond capacity:", c->top);
  for (; e; e = e->prev) {
    if (e->off + e->len != off) FAIL("extents do not tile the range at offset", off);
    if (!e->len || (e->len & (EXM_PAGE - 1)) || (e->off & (EXM_PAGE - 1))) FAIL("bad extent at offset", e->off);
    if (e->prev && e->prev->next != e) FAIL("broken extent links at offset", e->off);
    if (e->state > EXT_BUSY) FAIL("bad extent state at offset", e->off);
    if (e->state <= EXT_DIRTY) {
      if (e->prev && e->prev->state == e->state) FAIL("uncoalesced free extents at offset", e->off);
      if (e->bin != pbin_of(e->len / EXM_PAGE)) FAIL("free extent in wrong bin at offset", e->off);
      nfree++;
      if (e->state == EXT_DIRTY) dirty += e->len, committed += e->len;
      if (e == c->last && e->state == EXT_CLEAN) FAIL("clean extent left at the top at offset", e->off);
    } else if (e->state == EXT_BUSY) {
      committed += e->len;
    } else {
      if (hash_get(c, e->off) != e) FAIL("live extent missing from hash at offset", e->off);
      nused++;
      committed += e->len;
      if (e->state == EXT_USED) live += e->len;
      else {
        nseg++;
        if (check_segment(c, e, &live, &sfree, &sempty, msg, msglen)) return -1;
      }
    }
    off = e->off;
  }
  if (off != 0) FAIL("first extent does not start at 0 but at", off);
  if (c->last && c->last->next) FAIL("last extent has a successor", 0);
  if (nused != c->hcount) FAIL("hash holds a different number of extents:", c->hcount);
  if (dirty != c->dirty_bytes) FAIL("dirty byte count wrong, walk found", dirty);
  if (committed != c->st.committed) FAIL("committed byte count wrong, walk found", committed);
  if (live != c->st.live_bytes) FAIL("live byte count wrong, walk found", live);
  if (nseg != c->seg_count) FAIL("segment count wrong, walk found", nseg);
  if (sempty != c->seg_empty) FAIL("empty segment count wrong, walk found", sempty);
  /* no slot holds a bitmap but the segments' own (each checked above); none
   * was ever made beyond the highest top */
  if (c->seg_live) {
    size_t held = 0, upto = c->st.top_peak ? slot_of(c, c->st.top_peak - 1) + 1 : 0;
    if (upto > c->seg_slots) FAIL("top beyond the segment slots:", c->st.top_peak);
    if (c->seg_bias + (uintptr_t)c->base / EXM_SEG_SIZE * sizeof *c->seg_live != (uintptr_t)c->seg_live)
      FAIL("segment slots' bias wrong:", c->seg_bias);
    for (size_t i = 0; i < upto; i++) held += !!c->seg_live[i];
    if (held != nseg) FAIL("segment slots hold stray bitmaps:", held - nseg);
  }
  size_t inbins = 0;
  for (int s = 0; s < 2; s++)
    for (unsigned i = 0; i < EXM_PBINS; i++) {
      int bit = !!(c->pmap[s][i / 64] & (1ull << (i % 64)));
      if (bit != !!c->pbin[s][i]) FAIL("page bin bitmap wrong for bin", i);
      for (exm_ext_t *f = c->pbin[s][i]; f; f = f->fnext) {
        if (f->state != s || f->bin != i) FAIL("extent in a bin it does not belong to, bin", i);
        if (f->fnext && f->fnext->fprev != f) FAIL("broken bin links in bin", i);
        if (++inbins > nfree) FAIL("bins hold more extents than are free:", inbins);
      }
    }
  if (inbins != nfree) FAIL("free extents missing from bins:", nfree - inbins);
  size_t schunks = 0;
  for (unsigned i = 0; i < EXM_SBINS; i++) {
    int bit = !!(c->smap[i / 64] & (1ull << (i % 64)));
    if (bit != !!c->sbin[i]) FAIL("small bin bitmap wrong for bin", i);
    for (chunk_t *ch = c->sbin[i]; ch; ch = ch->fd) {
      if ((HEAD(ch) & CINUSE) || sbin_of(csize(ch)) != i) FAIL("bad chunk in small bin", i);
      if (ch->fd && ch->fd->bk != ch) FAIL("broken small bin links in bin", i);
      if (++schunks > sfree) FAIL("small bins hold more chunks than are free:", schunks);
    }
  }
  if (schunks != sfree) FAIL("free chunks missing from small bins:", sfree - schunks);
  return 0;
}
