/*
 * csvault.csvio._csvblocks.Profile: the per-column profile of csvault/csvio/profile.py,
 * accumulated in C (compiled into the _csvblocks extension; _csvblocks.c's module init
 * calls profile_add_type).
 *
 * Profile(width, decimal_comma)
 *   .feed_blocks(blocks, start=0) -> int
 *       Feeds the grid block plaintexts blocks[start:] (format byte GRID_FORMAT, row
 *       count and width as uint32 BE, then every value of every row joined with NUL, in
 *       strict UTF-8), with the GIL released. Stops at the first block that is not a
 *       grid block and returns its index (len(blocks) once all are fed): profile.py
 *       decodes that one itself and calls again after it.
 *   .feed_rows(rows) -> None
 *       Feeds rows of `width` str values each.
 *   .state() -> list of one tuple per column, exactly what profile.py's reference
 *       implementation (_PyProfile.state) returns for the same values:
 *       (empties, tokens, other, flags, int_min, int_max, num_min, num_max, text_min,
 *        text_max, exact, registers, candidates); profile.py documents each field and
 *       turns them into the result.
 *
 * A width or a block that does not match, a block that is not what its header says,
 * or invalid UTF-8: ValueError; a value that is not a str: TypeError. After an error
 * the profile refuses every further call (it may hold part of the faulty input).
 * A call while another thread is inside one: RuntimeError.
 *
 * Memory per column is bounded: the exact distinct table holds at most `bound` hashes
 * (max(256, min(10000, 1000000 / width))), then 4096 one-byte HyperLogLog registers
 * replace it; at most CANDIDATES examples of at most 64 code points each.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_utf8.h"
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define GRID_FORMAT 0x02
#define GRID_HEADER_SIZE 9

/* First capacity of a column's exact distinct table (a power of two >= 2).
 * scripts/c-sanitize.sh builds with 2, so that small inputs grow every table. */
#ifndef TABLE_FIRST_CAP
#define TABLE_FIRST_CAP 16
#endif

/* Kept in step with profile.py (tests/csvio/test_profile.py compares the two). */
enum { F_INT = 1, F_NUM = 2, F_BOOL = 4, F_DATE = 8, F_DATETIME = 16, F_ALL = 31 };
#define N_TOKENS 6
#define CANDIDATES 11 /* 5 examples + the 6 tokens that may turn out null */
#define EXAMPLE_CHARS 64
#define HLL_P 12
#define HLL_M (1 << HLL_P)
#define TEXT_CAP 40 /* the longest date-time is 35 bytes */

static const char *const TOKENS[N_TOKENS] = {"NA", "N/A", "null", "NULL", "NaN", "-"};

typedef struct {
    char *text; /* cut to EXAMPLE_CHARS code points */
    uint32_t len;
    uint8_t token;
} cand_t;

typedef struct {
    uint64_t empties, other, tokens[N_TOKENS];
    unsigned flags;
    int64_t imin, imax;
    double dmin, dmax;
    unsigned char tmin[TEXT_CAP], tmax[TEXT_CAP];
    uint8_t tmin_len, tmax_len;
    /* distinct: open addressing of hashes (0 marks a free slot; has_zero says whether
     * the hash 0 itself was seen), then HyperLogLog registers once past the bound */
    uint64_t *table;
    size_t table_cap, table_count;
    int has_zero;
    uint8_t *hll;
    int ncand;
    cand_t cand[CANDIDATES];
} col_t;

typedef struct {
    PyObject_HEAD
    Py_ssize_t width;
    int decimal_comma;
    int busy;   /* a call is running (with the GIL released) */
    int broken; /* an earlier call failed part way */
    size_t bound;
    uint64_t rows;
    col_t *cols;
} ProfileObject;

static locale_t c_locale;

/* --- the value hash: see profile.py's _hash64 ------------------------------------- */

#define SEED UINT64_C(0xcbf29ce484222325)
#define MULT UINT64_C(0x9e3779b97f4a7c15)
#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

static inline uint64_t fmix64(uint64_t k) {
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k *= UINT64_C(0xc4ceb9fe1a85ec53);
    k ^= k >> 33;
    return k;
}

static inline uint64_t mix(uint64_t h, uint64_t w) {
    h = (h ^ w) * MULT;
    return h ^ (h >> 32);
}

static inline uint64_t load8(const unsigned char *p) { /* little-endian */
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

static inline uint64_t load_tail(const unsigned char *p, size_t n) { /* n < 8; zero-padded */
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
    return w;
}

/* The hash of the n bytes at p, which may be read up to limit (>= p + n) in whole
 * words; *high: whether one of them is >= 0x80. */
static inline uint64_t hash_n(const unsigned char *p, size_t n, const unsigned char *limit,
                              int *high) {
    uint64_t h = SEED, acc = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w = load8(p + i);
        acc |= w;
        h = mix(h, w);
    }
    if (i < n) {
        size_t left = n - i;
        uint64_t w = (size_t)(limit - (p + i)) >= 8
                         ? load8(p + i) & (~UINT64_C(0) >> (64 - 8 * left))
                         : load_tail(p + i, left);
        acc |= w;
        h = mix(h, w);
    }
    *high = (acc & HIGHS) != 0;
    return fmix64(h ^ (uint64_t)n);
}

/* One bit per NUL byte of the 8 bytes of w (bit i: byte i, little-endian). */
static inline unsigned nul_bits(uint64_t w) {
    uint64_t low7 = UINT64_C(0x7f7f7f7f7f7f7f7f);
    uint64_t zero = ~(((w & low7) + low7) | w | low7); /* 0x80 in each NUL byte */
    return (unsigned)(((zero >> 7) * UINT64_C(0x0102040810204080)) >> 56);
}

/* One bit per NUL byte of p[:n] (n <= 64). */
static inline uint64_t nul_mask(const unsigned char *p, size_t n) {
#ifdef __SSE2__
    if (n == 64) {
        __m128i zero = _mm_setzero_si128();
        uint64_t m0 = (uint16_t)_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)p), zero));
        uint64_t m1 = (uint16_t)_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), zero));
        uint64_t m2 = (uint16_t)_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), zero));
        uint64_t m3 = (uint16_t)_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), zero));
        return m0 | m1 << 16 | m2 << 32 | m3 << 48;
    }
#endif
    uint64_t mask = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) mask |= (uint64_t)nul_bits(load8(p + i)) << i;
    if (i < n) mask |= (uint64_t)(nul_bits(load_tail(p + i, n - i)) & ((1u << (n - i)) - 1)) << i;
    return mask;
}

/* Strict UTF-8 (_utf8.h) over a whole value. */
static int utf8_valid(const unsigned char *p, size_t n) {
    const unsigned char *end = p + n;
    while (p < end) {
        if (*p < 0x80) {
            p++;
            continue;
        }
        int len = utf8_len(p, end);
        if (len <= 0) return 0;
        p += len;
    }
    return 1;
}

/* --- the type rules: see profile.py's module docstring ------------------------------ */

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

enum { NOT_NUMBER = 0, INTEGER = 1, NUMBER = 2 };

static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The double nearest to the number at p (already matched by scan_number): exactly
 * when its digits fit in 2**53 and its power of ten in 10**22 (one correctly rounded
 * operation on two exact doubles), else strtod_l in the C locale, correctly rounded
 * like Python's float(). */
static inline double to_double(const unsigned char *p, size_t n) {
    const unsigned char *q = p, *end = p + n;
    int negative = 0;
    if (*q == '+' || *q == '-') negative = *q++ == '-';
    uint64_t m = 0;
    int digits = 0, in_fraction = 0, exact = 1;
    long scale = 0;
    for (; q < end && *q != 'e' && *q != 'E'; q++) {
        if (*q == '.' || *q == ',') {
            in_fraction = 1;
            continue;
        }
        if (in_fraction) scale--;
        if (m == 0 && *q == '0') continue; /* a leading zero */
        if (++digits > 15) exact = 0;
        else m = m * 10 + (uint64_t)(*q - '0');
    }
    if (q < end) { /* the exponent */
        q++;
        int e_negative = 0;
        if (*q == '+' || *q == '-') e_negative = *q++ == '-';
        long e = 0;
        for (; q < end && e <= 100000; q++) e = e * 10 + (*q - '0');
        if (q < end) exact = 0;
        scale += e_negative ? -e : e;
    }
    if (exact && scale >= -22 && scale <= 22) {
        double d = (double)m;
        d = scale < 0 ? d / POW10[-scale] : d * POW10[scale];
        return negative ? -d : d;
    }
    char small[64];
    char *copy = n < sizeof small ? small : malloc(n + 1);
    if (!copy) return NAN; /* out of memory: counted as not a number */
    for (size_t i = 0; i < n; i++) copy[i] = p[i] == ',' ? '.' : (char)p[i];
    copy[n] = 0;
    double d = strtod_l(copy, NULL, c_locale);
    if (copy != small) free(copy);
    return d;
}

/* INTEGER ([+-]?[0-9]{1,18}, its value in *i and its double in *d: -0 is -0.0), NUMBER
 * (the other number forms) or NOT_NUMBER; finiteness is checked by the caller. */
static int scan_number(const unsigned char *p, size_t n, int decimal_comma, int64_t *i,
                       double *value) {
    const unsigned char *q = p, *end = p + n;
    int negative = 0;
    if (q < end && (*q == '+' || *q == '-')) negative = *q++ == '-';
    const unsigned char *d = q;
    while (q < end && is_digit(*q)) q++;
    size_t whole = (size_t)(q - d);
    if (q == end) {
        if (whole == 0) return NOT_NUMBER;
        if (whole > 18) return NUMBER;
        int64_t v = 0;
        for (; d < q; d++) v = v * 10 + (*d - '0');
        *i = negative ? -v : v;
        *value = negative ? -(double)v : (double)v;
        return INTEGER;
    }
    if (*q == ',') {
        if (!decimal_comma || whole == 0) return NOT_NUMBER;
        const unsigned char *f = ++q;
        while (q < end && is_digit(*q)) q++;
        return q == end && q > f ? NUMBER : NOT_NUMBER;
    }
    if (*q == '.') {
        const unsigned char *f = ++q;
        while (q < end && is_digit(*q)) q++;
        if (whole == 0 && q == f) return NOT_NUMBER;
        if (q == end) return NUMBER;
    } else if (whole == 0) {
        return NOT_NUMBER;
    }
    if (*q != 'e' && *q != 'E') return NOT_NUMBER;
    q++;
    if (q < end && (*q == '+' || *q == '-')) q++;
    const unsigned char *e = q;
    while (q < end && is_digit(*q)) q++;
    return q == end && q > e ? NUMBER : NOT_NUMBER;
}

static inline int is_bool(const unsigned char *p, size_t n) {
    const char *word;
    switch (n) {
    case 2: word = "no"; break;
    case 3: word = "yes"; break;
    case 4: word = "true"; break;
    case 5: word = "false"; break;
    default: return 0;
    }
    for (size_t k = 0; k < n; k++) /* letters only: bit 5 is the case */
        if ((p[k] | 0x20) != (unsigned char)word[k]) return 0;
    return 1;
}

static inline int two(const unsigned char *p, int max) { /* two digits <= max, or -1 */
    if (!is_digit(p[0]) || !is_digit(p[1])) return -1;
    int v = (p[0] - '0') * 10 + (p[1] - '0');
    return v <= max ? v : -1;
}

enum { NOT_DATE = 0, DATE = 1, DATETIME = 2 };

static int scan_datetime(const unsigned char *p, size_t n) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (n < 10 || n >= TEXT_CAP || p[4] != '-' || p[7] != '-') return NOT_DATE;
    for (int k = 0; k < 4; k++)
        if (!is_digit(p[k])) return NOT_DATE;
    int year = (p[0] - '0') * 1000 + (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
    int month = two(p + 5, 12), day = two(p + 8, 31);
    if (year < 1 || month < 1 || day < 1) return NOT_DATE;
    int leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    if (day > days[month - 1] + (month == 2 && leap)) return NOT_DATE;
    if (n == 10) return DATE;
    if ((p[10] != 'T' && p[10] != ' ') || n < 16 || p[13] != ':') return NOT_DATE;
    if (two(p + 11, 23) < 0 || two(p + 14, 59) < 0) return NOT_DATE;
    size_t k = 16;
    if (k < n && p[k] == ':') {
        if (n < k + 3 || two(p + k + 1, 59) < 0) return NOT_DATE;
        k += 3;
        if (k < n && p[k] == '.') {
            size_t f = ++k;
            while (k < n && is_digit(p[k])) k++;
            if (k == f || k - f > 9) return NOT_DATE;
        }
    }
    if (k < n && p[k] == 'Z') k++;
    else if (k < n && (p[k] == '+' || p[k] == '-')) {
        if (n < k + 6 || p[k + 3] != ':' || two(p + k + 1, 23) < 0 || two(p + k + 4, 59) < 0)
            return NOT_DATE;
        k += 6;
    }
    return k == n ? DATETIME : NOT_DATE;
}

static const uint8_t TOKEN_LEN[N_TOKENS] = {2, 3, 4, 4, 3, 1};

static inline int token_index(const unsigned char *p, size_t n) {
    if (n > 4 || (p[0] != 'N' && p[0] != 'n' && p[0] != '-')) return -1;
    for (int t = 0; t < N_TOKENS; t++)
        if (TOKEN_LEN[t] == n && memcmp(TOKENS[t], p, n) == 0) return t;
    return -1;
}

/* --- distinct values ---------------------------------------------------------------- */

static inline void hll_add(uint8_t *hll, uint64_t h) {
    uint64_t rest = h << HLL_P;
    uint8_t rho = rest ? (uint8_t)(__builtin_clzll(rest) + 1) : (uint8_t)(64 - HLL_P + 1);
    uint8_t *r = hll + (h >> (64 - HLL_P));
    if (rho > *r) *r = rho;
}

static int table_put(uint64_t *table, size_t cap, uint64_t h) { /* 1 if new */
    size_t mask = cap - 1, k = (size_t)h & mask;
    while (table[k]) {
        if (table[k] == h) return 0;
        k = (k + 1) & mask;
    }
    table[k] = h;
    return 1;
}

/* A hash the exact table does not hold (h != 0): into the table, growing it, or past
 * the bound into new HyperLogLog registers. 0, or -1 when out of memory. */
static int __attribute__((noinline)) distinct_new(col_t *c, size_t bound, uint64_t h) {
    if (c->table_count + (size_t)c->has_zero + 1 > bound) {
        uint8_t *hll = calloc(HLL_M, 1);
        if (!hll) return -1;
        for (size_t k = 0; k < c->table_cap; k++)
            if (c->table[k]) hll_add(hll, c->table[k]);
        if (c->has_zero) hll_add(hll, 0);
        hll_add(hll, h);
        free(c->table);
        c->table = NULL;
        c->table_cap = c->table_count = 0;
        c->hll = hll;
        return 0;
    }
    if (h == 0) {
        c->has_zero = 1;
        return 0;
    }
    if (4 * (c->table_count + 1) > 3 * c->table_cap) {
        size_t cap = c->table_cap ? 2 * c->table_cap : TABLE_FIRST_CAP;
        uint64_t *table = calloc(cap, sizeof *table);
        if (!table) return -1;
        for (size_t k = 0; k < c->table_cap; k++)
            if (c->table[k]) table_put(table, cap, c->table[k]);
        free(c->table);
        c->table = table;
        c->table_cap = cap;
    }
    table_put(c->table, c->table_cap, h);
    c->table_count++;
    return 0;
}

/* 1 if h is new to the exact count, 0 if not (or once it is an estimate), -1 when out
 * of memory. */
static inline int distinct_add(col_t *c, size_t bound, uint64_t h) {
    if (c->hll) {
        hll_add(c->hll, h);
        return 0;
    }
    if (h == 0) {
        if (c->has_zero) return 0;
    } else if (c->table) {
        size_t mask = c->table_cap - 1, k = (size_t)h & mask;
        for (uint64_t seen; (seen = c->table[k]) != 0; k = (k + 1) & mask)
            if (seen == h) return 0;
    }
    return distinct_new(c, bound, h) < 0 ? -1 : 1;
}

/* Keeps p[:n], cut to EXAMPLE_CHARS code points, as the next candidate example (the
 * caller has checked that it is a new value and that there is room); 0 or -1 (memory). */
static int __attribute__((noinline)) candidate_add(col_t *c, const unsigned char *p, size_t n,
                                                   int token) {
    size_t cut = n, chars = 0;
    if (n > EXAMPLE_CHARS) {
        for (cut = 0; cut < n; cut++)
            if ((p[cut] & 0xC0) != 0x80 && ++chars > EXAMPLE_CHARS) break;
    }
    char *text = malloc(cut ? cut : 1);
    if (!text) return -1;
    memcpy(text, p, cut);
    cand_t *d = &c->cand[c->ncand++];
    d->text = text;
    d->len = (uint32_t)cut;
    d->token = (uint8_t)token;
    return 0;
}

/* --- one value ------------------------------------------------------------------------ */

/* Byte order of a[:an] and b[:bn] (at most TEXT_CAP bytes each). */
static inline int text_cmp(const unsigned char *a, size_t an, const unsigned char *b, size_t bn) {
    size_t n = an < bn ? an : bn;
    for (size_t k = 0; k < n; k++)
        if (a[k] != b[k]) return a[k] < b[k] ? -1 : 1;
    return an < bn ? -1 : an > bn;
}

static inline void text_bounds(col_t *c, const unsigned char *p, size_t n, int first) {
    if (first || text_cmp(p, n, c->tmin, c->tmin_len) < 0) {
        memcpy(c->tmin, p, n);
        c->tmin_len = (uint8_t)n;
    }
    if (first || text_cmp(p, n, c->tmax, c->tmax_len) > 0) {
        memcpy(c->tmax, p, n);
        c->tmax_len = (uint8_t)n;
    }
}

static inline void double_bounds(col_t *c, double d, int first) {
    if (first) c->dmin = c->dmax = d;
    else if (d < c->dmin) c->dmin = d;
    else if (d > c->dmax) c->dmax = d;
}

/* The non-empty value p[:n] with hash h: 0, or -1 when out of memory. */
static inline __attribute__((always_inline)) int feed_value(ProfileObject *P, col_t *c, const unsigned char *p, size_t n,
                             uint64_t h) {
    if (n <= 4) {
        int t = token_index(p, n);
        if (t >= 0) {
            int new = c->tokens[t]++ == 0;
            return new && c->ncand < CANDIDATES ? candidate_add(c, p, n, 1) : 0;
        }
    }
    int first = c->other++ == 0;
    unsigned flags = c->flags;
    if (flags & (F_INT | F_NUM)) {
        int64_t i = 0;
        double d = 0;
        int kind = scan_number(p, n, P->decimal_comma, &i, &d);
        if (kind == INTEGER) {
            if (flags & F_INT) {
                if (first) c->imin = c->imax = i;
                else if (i < c->imin) c->imin = i;
                else if (i > c->imax) c->imax = i;
            }
            double_bounds(c, d, first);
        } else {
            flags &= ~(unsigned)F_INT;
            d = kind == NUMBER ? to_double(p, n) : NAN;
            if (isfinite(d)) double_bounds(c, d, first);
            else flags &= ~(unsigned)F_NUM;
        }
    }
    if ((flags & F_BOOL) && !is_bool(p, n)) flags &= ~(unsigned)F_BOOL;
    if (flags & F_DATETIME) {
        int kind = scan_datetime(p, n);
        if (kind != DATE) flags &= ~(unsigned)F_DATE;
        if (kind == NOT_DATE) flags &= ~(unsigned)F_DATETIME;
        else text_bounds(c, p, n, first);
    }
    c->flags = flags;
    int new = distinct_add(c, P->bound, h);
    if (new < 0) return -1;
    return new && c->ncand < CANDIDATES ? candidate_add(c, p, n, 0) : 0;
}

/* --- the type -------------------------------------------------------------------------- */

static void cols_free(col_t *cols, Py_ssize_t width) {
    if (!cols) return;
    for (Py_ssize_t k = 0; k < width; k++) {
        free(cols[k].table);
        free(cols[k].hll);
        for (int j = 0; j < cols[k].ncand; j++) free(cols[k].cand[j].text);
    }
    free(cols);
}

static void Profile_dealloc(ProfileObject *self) {
    cols_free(self->cols, self->width);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Profile_init(ProfileObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"width", "decimal_comma", NULL};
    Py_ssize_t width;
    int decimal_comma;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "np", kwlist, &width, &decimal_comma))
        return -1;
    if (self->cols) {
        PyErr_SetString(PyExc_RuntimeError, "Profile: already initialised");
        return -1;
    }
    if (width < 1 || width > 0x7fffffff) {
        PyErr_SetString(PyExc_ValueError, "Profile: width out of range");
        return -1;
    }
    col_t *cols = calloc((size_t)width, sizeof *cols);
    if (!cols) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t k = 0; k < width; k++) cols[k].flags = F_ALL;
    size_t bound = (size_t)(1000000 / width);
    self->bound = bound > 10000 ? 10000 : bound < 256 ? 256 : bound;
    self->width = width;
    self->decimal_comma = decimal_comma;
    self->cols = cols;
    return 0;
}

/* Whether the profile may run a call now; else an exception is set. */
static int usable(ProfileObject *self) {
    if (!self->cols) PyErr_SetString(PyExc_RuntimeError, "Profile: not initialised");
    else if (self->busy) PyErr_SetString(PyExc_RuntimeError, "Profile: in use by another thread");
    else if (self->broken)
        PyErr_SetString(PyExc_ValueError, "Profile: unusable after an earlier error");
    else return 1;
    return 0;
}

static uint32_t get_be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

enum { FEED_OK = 0, FEED_NOMEM = 1, FEED_SHAPE = 2, FEED_UTF8 = 3 };

/* One value of a grid block, p[:n], of column *k; then *k moves to the next column. */
static inline int feed_cell(ProfileObject *P, Py_ssize_t *k, const unsigned char *p, size_t n,
                            const unsigned char *end) {
    col_t *c = &P->cols[*k];
    *k = *k + 1 == P->width ? 0 : *k + 1;
    if (n == 0) {
        c->empties++;
        return FEED_OK;
    }
    int high;
    uint64_t h = hash_n(p, n, end, &high);
    if (high && !utf8_valid(p, n)) return FEED_UTF8;
    return feed_value(P, c, p, n, h) < 0 ? FEED_NOMEM : FEED_OK;
}

/* One grid block (its header checked by the caller). The NULs are found 64 bytes at a
 * time, so that finding where a value starts never waits for the one before. */
static int feed_grid(ProfileObject *P, const unsigned char *data, size_t len, uint32_t rows) {
    const unsigned char *end = data + len, *start = data + GRID_HEADER_SIZE;
    uint64_t values = (uint64_t)rows * (uint64_t)P->width, seen = 0;
    Py_ssize_t k = 0;
    int status;
    for (const unsigned char *chunk = start; chunk < end; chunk += 64) {
        size_t size = (size_t)(end - chunk) < 64 ? (size_t)(end - chunk) : 64;
        uint64_t mask = nul_mask(chunk, size);
        while (mask) {
            const unsigned char *nul = chunk + __builtin_ctzll(mask);
            mask &= mask - 1;
            if (++seen >= values) return FEED_SHAPE; /* the last value ends at the end */
            if ((status = feed_cell(P, &k, start, (size_t)(nul - start), end)) != FEED_OK)
                return status;
            start = nul + 1;
        }
    }
    if (++seen != values) return FEED_SHAPE;
    if ((status = feed_cell(P, &k, start, (size_t)(end - start), end)) != FEED_OK) return status;
    P->rows += rows;
    return FEED_OK;
}

static PyObject *Profile_feed_blocks(ProfileObject *self, PyObject *args) {
    PyObject *list;
    Py_ssize_t start = 0;
    if (!PyArg_ParseTuple(args, "O!|n", &PyList_Type, &list, &start)) return NULL;
    if (!usable(self)) return NULL;
    Py_ssize_t total = PyList_GET_SIZE(list);
    if (start < 0 || start > total) {
        PyErr_SetString(PyExc_ValueError, "feed_blocks: start out of range");
        return NULL;
    }
    /* The grid blocks from start on, each held, and where the first other block is. */
    Py_ssize_t stop = start;
    for (; stop < total; stop++) {
        PyObject *b = PyList_GET_ITEM(list, stop);
        if (!PyBytes_Check(b)) {
            PyErr_SetString(PyExc_TypeError, "feed_blocks: blocks must be bytes");
            return NULL;
        }
        Py_ssize_t n = PyBytes_GET_SIZE(b);
        const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(b);
        if (n == 0) {
            PyErr_SetString(PyExc_ValueError, "feed_blocks: an empty block");
            return NULL;
        }
        if (d[0] != GRID_FORMAT) break;
        if (n < GRID_HEADER_SIZE || get_be32(d + 1) < 1 ||
            get_be32(d + 5) != (uint32_t)self->width) {
            PyErr_SetString(PyExc_ValueError,
                            "feed_blocks: a grid block of another width, or malformed");
            return NULL;
        }
    }
    Py_ssize_t count = stop - start;
    PyObject **held = PyMem_Malloc((size_t)(count ? count : 1) * sizeof *held);
    if (!held) return PyErr_NoMemory();
    for (Py_ssize_t k = 0; k < count; k++) {
        held[k] = PyList_GET_ITEM(list, start + k);
        Py_INCREF(held[k]);
    }
    int status = FEED_OK;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < count && status == FEED_OK; k++) {
        const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(held[k]);
        status = feed_grid(self, d, (size_t)PyBytes_GET_SIZE(held[k]), get_be32(d + 1));
    }
    Py_END_ALLOW_THREADS
    self->busy = 0;
    for (Py_ssize_t k = 0; k < count; k++) Py_DECREF(held[k]);
    PyMem_Free(held);
    if (status != FEED_OK) {
        self->broken = 1;
        if (status == FEED_NOMEM) return PyErr_NoMemory();
        PyErr_SetString(PyExc_ValueError, status == FEED_UTF8
                                              ? "feed_blocks: a grid block that is not UTF-8"
                                              : "feed_blocks: a grid block that does not match "
                                                "its header");
        return NULL;
    }
    return PyLong_FromSsize_t(stop);
}

static PyObject *Profile_feed_rows(ProfileObject *self, PyObject *rows) {
    if (!usable(self)) return NULL;
    PyObject *seq = PySequence_Fast(rows, "feed_rows: rows must be a sequence");
    if (!seq) return NULL;
    Py_ssize_t nrows = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    /* Every row checked first: a wrong shape or type leaves the profile as it was. */
    for (Py_ssize_t r = 0; r < nrows; r++) {
        PyObject *row = items[r];
        if (!PyList_Check(row) && !PyTuple_Check(row)) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_TypeError, "feed_rows: each row must be a list or a tuple");
            return NULL;
        }
        if (PySequence_Fast_GET_SIZE(row) != self->width) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "feed_rows: a row of another width");
            return NULL;
        }
        PyObject **values = PySequence_Fast_ITEMS(row);
        for (Py_ssize_t k = 0; k < self->width; k++)
            if (!PyUnicode_Check(values[k])) {
                Py_DECREF(seq);
                PyErr_SetString(PyExc_TypeError, "feed_rows: values must be str");
                return NULL;
            }
    }
    for (Py_ssize_t r = 0; r < nrows; r++) {
        PyObject **values = PySequence_Fast_ITEMS(items[r]);
        for (Py_ssize_t k = 0; k < self->width; k++) {
            Py_ssize_t n;
            const char *p = PyUnicode_AsUTF8AndSize(values[k], &n);
            if (!p) { /* a lone surrogate */
                self->broken = 1;
                Py_DECREF(seq);
                return NULL;
            }
            col_t *c = &self->cols[k];
            if (n == 0) {
                c->empties++;
                continue;
            }
            int high;
            const unsigned char *v = (const unsigned char *)p;
            uint64_t h = hash_n(v, (size_t)n, v + n, &high);
            if (feed_value(self, c, (const unsigned char *)p, (size_t)n, h) < 0) {
                self->broken = 1;
                Py_DECREF(seq);
                return PyErr_NoMemory();
            }
        }
        self->rows++;
    }
    Py_DECREF(seq);
    Py_RETURN_NONE;
}

static PyObject *column_state(col_t *c) {
    PyObject *tokens = PyTuple_New(N_TOKENS), *cands = PyList_New(c->ncand);
    PyObject *result = NULL;
    if (!tokens || !cands) goto done;
    for (int t = 0; t < N_TOKENS; t++) {
        PyObject *v = PyLong_FromUnsignedLongLong(c->tokens[t]);
        if (!v) goto done;
        PyTuple_SET_ITEM(tokens, t, v);
    }
    for (int k = 0; k < c->ncand; k++) {
        PyObject *v = Py_BuildValue("(NO)",
                                    PyUnicode_DecodeUTF8(c->cand[k].text, c->cand[k].len, NULL),
                                    c->cand[k].token ? Py_True : Py_False);
        if (!v) goto done;
        PyList_SET_ITEM(cands, k, v);
    }
    int some = c->other > 0;
    int ints = some && (c->flags & F_INT), nums = some && (c->flags & F_NUM);
    int texts = some && (c->flags & F_DATETIME);
    PyObject *exact = c->hll ? Py_NewRef(Py_None)
                             : PyLong_FromSize_t(c->table_count + (size_t)c->has_zero);
    PyObject *registers = c->hll ? PyBytes_FromStringAndSize((const char *)c->hll, HLL_M)
                                 : Py_NewRef(Py_None);
    result = Py_BuildValue(
        "(KOKINNNNNNNNO)", (unsigned long long)c->empties, tokens, (unsigned long long)c->other,
        c->flags, ints ? PyLong_FromLongLong(c->imin) : Py_NewRef(Py_None),
        ints ? PyLong_FromLongLong(c->imax) : Py_NewRef(Py_None),
        nums ? PyFloat_FromDouble(c->dmin) : Py_NewRef(Py_None),
        nums ? PyFloat_FromDouble(c->dmax) : Py_NewRef(Py_None),
        texts ? PyUnicode_DecodeUTF8((const char *)c->tmin, c->tmin_len, NULL)
              : Py_NewRef(Py_None),
        texts ? PyUnicode_DecodeUTF8((const char *)c->tmax, c->tmax_len, NULL)
              : Py_NewRef(Py_None),
        exact, registers, cands);
done:
    Py_XDECREF(tokens);
    Py_XDECREF(cands);
    return result;
}

static PyObject *Profile_state(ProfileObject *self, PyObject *unused) {
    (void)unused;
    if (!usable(self)) return NULL;
    PyObject *list = PyList_New(self->width);
    if (!list) return NULL;
    for (Py_ssize_t k = 0; k < self->width; k++) {
        PyObject *s = column_state(&self->cols[k]);
        if (!s) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k, s);
    }
    return list;
}

static PyObject *Profile_get_rows(ProfileObject *self, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(self->rows);
}

static PyObject *Profile_get_width(ProfileObject *self, void *closure) {
    (void)closure;
    return PyLong_FromSsize_t(self->width);
}

static PyObject *Profile_get_bound(ProfileObject *self, void *closure) {
    (void)closure;
    return PyLong_FromSize_t(self->bound);
}

static PyMethodDef Profile_methods[] = {
    {"feed_blocks", (PyCFunction)Profile_feed_blocks, METH_VARARGS,
     "Feed grid blocks[start:]; the index of the first other block (see the source)."},
    {"feed_rows", (PyCFunction)Profile_feed_rows, METH_O, "Feed rows of width str values."},
    {"state", (PyCFunction)Profile_state, METH_NOARGS, "Each column's raw state."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Profile_getset[] = {
    {"rows", (getter)Profile_get_rows, NULL, "Rows fed.", NULL},
    {"width", (getter)Profile_get_width, NULL, "Values per row.", NULL},
    {"bound", (getter)Profile_get_bound, NULL, "Distinct values counted exactly.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ProfileType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "csvault.csvio._csvblocks.Profile",
    .tp_basicsize = sizeof(ProfileObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Per-column profile accumulated from grid blocks and rows (see _profile.c).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Profile_init,
    .tp_dealloc = (destructor)Profile_dealloc,
    .tp_methods = Profile_methods,
    .tp_getset = Profile_getset,
};

int profile_add_type(PyObject *module) {
    if (!c_locale) {
        c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
        if (!c_locale) {
            PyErr_NoMemory();
            return -1;
        }
    }
    if (PyType_Ready(&ProfileType) < 0) return -1;
    Py_INCREF(&ProfileType);
    if (PyModule_AddObject(module, "Profile", (PyObject *)&ProfileType) < 0) {
        Py_DECREF(&ProfileType);
        return -1;
    }
    return 0;
}
