/*
 * csvault.csvio._csvblocks: the ingest's CSV fast path, in C.
 *
 * parse(buf, pos, final, delimiter, width, max_field, max_row, max_rows,
 *       block_rows, block_bytes) -> (blocks, counts, pos, rows, status)
 *
 * Parses complete data rows of UTF-8 CSV text from buf[pos:] and returns them as
 * the "grid" plaintexts of csvault/csvio/blocks.py (format byte GRID_FORMAT, row
 * count and width as uint32 BE, then every value of every row joined with NUL, in
 * UTF-8; the module exports GRID_FORMAT and GRID_HEADER_SIZE, and fastcsv.py refuses
 * a build whose values differ from blocks.py's),
 * one per block of at most block_rows rows and about block_bytes of text, with
 * the rows each block holds in `counts`. It never builds a Python object per
 * value, and it runs with the GIL released.
 *
 * It accepts only what csvault's Python reader (csvault/csvio/reader.py)
 * reads the same way, and declines everything else, so the Python reader, which
 * knows every rule and says exactly what is wrong and where, has the last word:
 *
 *   - strict UTF-8 (an invalid or, at the end of the file, truncated sequence:
 *     decline), no NUL byte;
 *   - rows end at LF, CRLF or a lone CR; blank lines are skipped;
 *   - an unquoted value holds no quote at all (the Python reader rejects most
 *     such quotes and keeps a few: decline either way);
 *   - a quoted value starts right at the start of its field, doubles its quotes,
 *     may hold delimiters and line ends (kept verbatim), and its closing quote is
 *     followed by the delimiter, a line end or the end of the file;
 *   - every row has exactly `width` values, none longer than max_field bytes
 *     (the reader's limit counts characters, of which there are never more),
 *     no row longer than max_row bytes, its line end included (the reader's
 *     limit is on each physical line with its line end).
 *
 * Status: 0 = stopped at an incomplete row at the end of buf (call again with
 * more text; a row whose CR ends buf is one, as an LF may follow) or after
 * max_rows rows; 1 = declined at the row starting at the returned pos (hand the
 * rest of the file to the Python reader); 2 = the end of the text (final only).
 * Rows before a decline are good and are returned.
 *
 * Arguments: 0 <= pos <= len(buf); delimiter an ASCII code other than NUL, the
 * quote, CR and LF; 1 <= width, block_rows <= 2**31 - 1; max_field >= 0;
 * max_row >= 2 (blank lines are skipped unmeasured, and CRLF is 2 bytes);
 * block_bytes >= 1; max_rows >= 0. Out of range: ValueError (beyond a
 * Py_ssize_t: OverflowError).
 *
 * The module also holds the Profile type of _profile.c (csvault/csvio/profile.py's
 * C implementation), added by profile_add_type.
 */
#define PY_SSIZE_T_CLEAN

/* The grid block header: format byte, row count (uint32 BE), width (uint32 BE). */
#define GRID_FORMAT 0x02
#define GRID_HEADER_SIZE 9
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_utf8.h"

/* First capacities of the output and of the block list. scripts/c-sanitize.sh builds
 * with both at 1, so that small inputs cross every capacity boundary under ASan. */
#ifndef OUT_FIRST_CAP
#define OUT_FIRST_CAP 65536
#endif
#ifndef BLOCKS_FIRST_CAP
#define BLOCKS_FIRST_CAP 64
#endif

enum { ST_MORE = 0, ST_DECLINE = 1, ST_END = 2 };
enum { ROW_OK = 0, ROW_MORE = 1, ROW_DECLINE = 2 };

typedef struct {
    unsigned char *data;
    size_t size, cap;
} out_t;

static int out_reserve(out_t *o, size_t extra) {
    if (o->size + extra <= o->cap) return 0;
    size_t cap = o->cap ? o->cap : OUT_FIRST_CAP;
    while (cap < o->size + extra) cap *= 2;
    unsigned char *data = realloc(o->data, cap);
    if (!data) return -1;
    o->data = data;
    o->cap = cap;
    return 0;
}

/* Bytes to step over for the character at q (q < end): > 0, or -ROW_DECLINE for NUL
 * and invalid UTF-8, -ROW_MORE for a character cut off by the end of the buffer. */
static inline int char_step(const unsigned char *q, const unsigned char *end, int final) {
    if (*q == 0) return -ROW_DECLINE;
    if (*q < 0x80) return 1;
    int n = utf8_len(q, end);
    if (n == 0) return -ROW_DECLINE;
    if (n < 0) return final ? -ROW_DECLINE : -ROW_MORE;
    return n;
}

typedef struct {
    const unsigned char *buf;
    Py_ssize_t len;
    int final;
    unsigned char delim;
    Py_ssize_t width, max_field, max_row;
} in_t;

/* Parse one row starting at *pos (not at a blank line) and append its values,
 * each preceded by NUL unless it is the first value of the block. */
static int parse_row(const in_t *in, Py_ssize_t *pos, out_t *o, int first_in_block) {
    const unsigned char *start = in->buf + *pos, *p = start, *end = in->buf + in->len;
    Py_ssize_t fields = 0;
    for (;;) {
        if (out_reserve(o, 1) < 0) return -1;
        if (!(first_in_block && fields == 0)) o->data[o->size++] = 0;
        size_t field_start = o->size;
        int ended = 0; /* the row ends after this field */
        if (p < end && *p == '"') {
            p++;
            for (;;) {
                const unsigned char *q = p;
                while (q < end && *q != '"') {
                    int n = char_step(q, end, in->final);
                    if (n < 0) return -n;
                    q += n;
                }
                if (out_reserve(o, (size_t)(q - p) + 1) < 0) return -1;
                memcpy(o->data + o->size, p, (size_t)(q - p));
                o->size += (size_t)(q - p);
                if (q >= end) return in->final ? ROW_DECLINE : ROW_MORE; /* unterminated */
                if (q + 1 >= end) {
                    if (!in->final) return ROW_MORE;
                    p = q + 1;
                    ended = 1; /* closing quote at the end of the file */
                    break;
                }
                if (q[1] == '"') { /* a doubled quote */
                    o->data[o->size++] = '"';
                    p = q + 2;
                    continue;
                }
                p = q + 1; /* closing quote: a delimiter or a line end must follow */
                if (*p == in->delim) p++;
                else if (*p == '\n' || *p == '\r') ended = 1;
                else return ROW_DECLINE;
                break;
            }
        } else {
            const unsigned char *q = p;
            while (q < end && *q != in->delim && *q != '\n' && *q != '\r') {
                if (*q == '"') return ROW_DECLINE;
                int n = char_step(q, end, in->final);
                if (n < 0) return -n;
                q += n;
            }
            if (q >= end && !in->final) return ROW_MORE;
            if (out_reserve(o, (size_t)(q - p)) < 0) return -1;
            memcpy(o->data + o->size, p, (size_t)(q - p));
            o->size += (size_t)(q - p);
            p = q;
            if (p < end && *p == in->delim) p++;
            else ended = 1;
        }
        if ((Py_ssize_t)(o->size - field_start) > in->max_field) return ROW_DECLINE;
        if (++fields > in->width) return ROW_DECLINE;
        if (p - start > in->max_row) return ROW_DECLINE;
        if (ended) {
            if (p < end && *p == '\r') {
                p++;
                /* An LF may follow in the next text, and would count in the line's length. */
                if (p >= end && !in->final) return ROW_MORE;
                if (p < end && *p == '\n') p++;
            } else if (p < end && *p == '\n') {
                p++;
            }
            /* The reference reader's line limit counts the line end too. */
            if (p - start > in->max_row) return ROW_DECLINE;
            break;
        }
        if (p >= end) { /* a delimiter was the last byte */
            if (!in->final) return ROW_MORE;
            /* "a," at the end of the file: one more, empty, value */
            if (out_reserve(o, 1) < 0) return -1;
            o->data[o->size++] = 0;
            if (++fields > in->width) return ROW_DECLINE;
            break;
        }
    }
    if (fields != in->width) return ROW_DECLINE;
    *pos = p - in->buf;
    return ROW_OK;
}

static void put_be32(unsigned char *p, uint32_t v) {
    for (int i = 3; i >= 0; i--) { p[i] = (unsigned char)(v & 0xff); v >>= 8; }
}

typedef struct {
    size_t offset; /* of the block's header in the output */
    uint32_t rows;
} block_t;

static PyObject *parse(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view;
    Py_ssize_t pos, width, max_field, max_row, max_rows, block_rows, block_bytes;
    int final, delim;
    if (!PyArg_ParseTuple(args, "y*npinnnnnn", &view, &pos, &final, &delim, &width,
                          &max_field, &max_row, &max_rows, &block_rows, &block_bytes))
        return NULL;
    if (pos < 0 || pos > view.len || delim < 1 || delim > 127 || delim == '"' || delim == '\r' ||
        delim == '\n' || width < 1 || width > 0x7fffffff || max_field < 0 || max_row < 2 ||
        block_rows < 1 || block_rows > 0x7fffffff || block_bytes < 1 || max_rows < 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "parse: argument out of range");
        return NULL;
    }
    in_t in = {view.buf, view.len, final, (unsigned char)delim, width, max_field, max_row};
    out_t o = {NULL, 0, 0};
    block_t *blocks = NULL;
    size_t nblocks = 0, cap_blocks = 0;
    Py_ssize_t rows = 0;
    int status = ST_MORE, failed = 0;

    Py_BEGIN_ALLOW_THREADS
    size_t block_text = 0;
    int open_block = 0;
    while (rows < max_rows) {
        while (pos < in.len && (in.buf[pos] == '\n' || in.buf[pos] == '\r')) pos++; /* blank */
        if (pos >= in.len) {
            if (final) status = ST_END;
            break;
        }
        if (!open_block) {
            if (nblocks == cap_blocks) {
                size_t cap = cap_blocks ? 2 * cap_blocks : BLOCKS_FIRST_CAP;
                block_t *grown = realloc(blocks, cap * sizeof(block_t));
                if (!grown || out_reserve(&o, GRID_HEADER_SIZE) < 0) {
                    if (grown) blocks = grown;
                    failed = 1;
                    break;
                }
                blocks = grown;
                cap_blocks = cap;
            } else if (out_reserve(&o, GRID_HEADER_SIZE) < 0) {
                failed = 1;
                break;
            }
            blocks[nblocks].offset = o.size;
            blocks[nblocks].rows = 0;
            o.size += GRID_HEADER_SIZE;
            nblocks++;
            open_block = 1;
            block_text = o.size;
        }
        size_t rollback = o.size;
        int r = parse_row(&in, &pos, &o, blocks[nblocks - 1].rows == 0);
        if (r != ROW_OK) {
            o.size = rollback;
            if (r < 0) failed = 1;
            else if (r == ROW_DECLINE) status = ST_DECLINE;
            break;
        }
        rows++;
        if (++blocks[nblocks - 1].rows >= (uint32_t)block_rows ||
            o.size - block_text >= (size_t)block_bytes)
            open_block = 0;
    }
    if (nblocks && blocks[nblocks - 1].rows == 0) { /* opened, then no row: drop it */
        nblocks--;
        o.size = blocks[nblocks].offset;
    }
    Py_END_ALLOW_THREADS

    PyObject *result = NULL, *list = NULL, *counts = NULL;
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    list = PyList_New((Py_ssize_t)nblocks);
    counts = PyList_New((Py_ssize_t)nblocks);
    if (!list || !counts) goto done;
    for (size_t i = 0; i < nblocks; i++) {
        size_t from = blocks[i].offset;
        size_t to = i + 1 < nblocks ? blocks[i + 1].offset : o.size;
        unsigned char *head = o.data + from;
        head[0] = GRID_FORMAT;
        put_be32(head + 1, blocks[i].rows);
        put_be32(head + 5, (uint32_t)width);
        PyObject *b = PyBytes_FromStringAndSize((const char *)head, (Py_ssize_t)(to - from));
        PyObject *n = PyLong_FromUnsignedLong(blocks[i].rows);
        if (!b || !n) {
            Py_XDECREF(b);
            Py_XDECREF(n);
            goto done;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, b);
        PyList_SET_ITEM(counts, (Py_ssize_t)i, n);
    }
    result = Py_BuildValue("(OOnni)", list, counts, pos, rows, status);
done:
    Py_XDECREF(list);
    Py_XDECREF(counts);
    free(o.data);
    free(blocks);
    PyBuffer_Release(&view);
    return result;
}

int profile_add_type(PyObject *module); /* _profile.c */

static PyMethodDef methods[] = {
    {"parse", parse, METH_VARARGS, "Parse complete CSV rows into grid blocks (see the source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_csvblocks", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__csvblocks(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddIntConstant(m, "GRID_FORMAT", GRID_FORMAT) < 0 ||
              PyModule_AddIntConstant(m, "GRID_HEADER_SIZE", GRID_HEADER_SIZE) < 0 ||
              profile_add_type(m) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
