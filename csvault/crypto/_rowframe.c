/*
 * csvault.crypto._rowframe: the ingest's per-row work in C (optional accelerator).
 *
 * encrypt_copy_tuples(key, ad_prefix, attempt, first_row, rows, tuple_fixed, blob_prefix)
 *
 * For consecutive rows numbered first_row, first_row + 1, ... (each a list of str)
 * returns the PostgreSQL binary COPY tuples that csvault.datasets.rowstore would
 * frame from RowCipher.encrypt_rows_split(), byte for byte:
 *
 *   tuple_fixed (field count, uuid length, uuid, int8 length: 26 bytes)
 *   row number (int64 BE) | blob length (int32 BE) | blob_prefix | ciphertext | tag
 *
 * where the plaintext is 0x00 || "\0".join(values) in UTF-8, the nonce is
 * attempt (uint32 BE) || row number (uint64 BE) and the associated data is
 * ad_prefix || row number (uint64 BE): the "separated" row format of
 * csvault/crypto/rows.py, under AES-256-GCM with a 16-byte tag.
 *
 * Returns None when a row needs the general ("counted") format (an empty row,
 * or a value containing NUL) or the input is not a list of lists of str: the
 * caller then takes the Python path for the batch. The values are gathered,
 * and a reference to each taken, with the GIL held; the encryption runs with
 * the GIL released (so the ingest's writer thread can stream the previous
 * batch to PostgreSQL meanwhile), reading only what those references keep
 * alive, so another thread changing the lists cannot free what is being read.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <string.h>

#define TAG_SIZE 16
#define NONCE_SIZE 12

static void put_be64(unsigned char *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) { p[i] = (unsigned char)(v & 0xff); v >>= 8; }
}

static void put_be32(unsigned char *p, uint32_t v) {
    for (int i = 3; i >= 0; i--) { p[i] = (unsigned char)(v & 0xff); v >>= 8; }
}

typedef struct { const char *data; Py_ssize_t size; } slice_t;

#define MAX_INT8 ((unsigned long long)INT64_MAX)

static PyObject *encrypt_copy_tuples(PyObject *self, PyObject *args) {
    Py_buffer key, ad_prefix, fixed, blob_prefix;
    PyObject *attempt_obj, *first_obj, *rows;
    if (!PyArg_ParseTuple(args, "y*y*OOOy*y*", &key, &ad_prefix, &attempt_obj, &first_obj,
                          &rows, &fixed, &blob_prefix))
        return NULL;
    PyObject *result = NULL;
    slice_t *values = NULL;
    PyObject **held = NULL; /* a reference to every value while the GIL is released */
    Py_ssize_t nheld = 0;
    Py_ssize_t *widths = NULL;
    unsigned char *scratch = NULL, *ad = NULL;
    EVP_CIPHER_CTX *ctx = NULL;

    /* Range-checked here too (not only by the Python wrapper): negative or too large
       numbers raise instead of wrapping around. */
    unsigned long long attempt = PyLong_AsUnsignedLongLong(attempt_obj);
    if (PyErr_Occurred()) goto done;
    unsigned long long first_row = PyLong_AsUnsignedLongLong(first_obj);
    if (PyErr_Occurred()) goto done;
    if (key.len != 32 || attempt > 0xffffffffULL) {
        PyErr_SetString(PyExc_ValueError, "key must be 32 bytes and attempt a uint32");
        goto done;
    }
    if (!PyList_Check(rows)) { result = Py_NewRef(Py_None); goto done; }
    Py_ssize_t nrows = PyList_GET_SIZE(rows);
    if (nrows == 0) { result = PyBytes_FromStringAndSize(NULL, 0); goto done; }
    /* COPY's row_number is int8: the last row number must fit in it. */
    if (first_row > MAX_INT8 - (unsigned long long)(nrows - 1)) {
        PyErr_SetString(PyExc_ValueError, "row numbers out of range for int8");
        goto done;
    }

    /* Pass 1 (GIL held): UTF-8 views of every value, sizes, the NUL check. Anything
       but lists of str (or an empty row, or a NUL) returns None: the Python path. */
    Py_ssize_t nvalues = 0;
    for (Py_ssize_t r = 0; r < nrows; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyList_Check(row) || PyList_GET_SIZE(row) == 0) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        nvalues += PyList_GET_SIZE(row);
    }
    values = PyMem_Malloc(sizeof(slice_t) * (size_t)nvalues);
    held = PyMem_Malloc(sizeof(PyObject *) * (size_t)nvalues);
    widths = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)nrows);
    if (!values || !held || !widths) { PyErr_NoMemory(); goto done; }
    Py_ssize_t out_size = 0, max_plain = 0, v = 0;
    const Py_ssize_t per_row = fixed.len + 8 + 4 + blob_prefix.len + TAG_SIZE;
    for (Py_ssize_t r = 0; r < nrows; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        Py_ssize_t width = PyList_GET_SIZE(row), plain = 1 + (width - 1);
        if (v + width > nvalues) { result = Py_NewRef(Py_None); goto done; } /* list grew */
        for (Py_ssize_t c = 0; c < width; c++) {
            PyObject *value = PyList_GET_ITEM(row, c);
            if (!PyUnicode_Check(value)) { result = Py_NewRef(Py_None); goto done; }
            Py_ssize_t size;
            const char *data = PyUnicode_AsUTF8AndSize(value, &size);
            if (!data) goto done; /* lone surrogates: UnicodeEncodeError, as in Python */
            if (size && memchr(data, 0, (size_t)size)) { result = Py_NewRef(Py_None); goto done; }
            held[nheld++] = Py_NewRef(value);
            values[v].data = data;
            values[v].size = size;
            v++;
            plain += size;
        }
        if (plain > INT32_MAX - (Py_ssize_t)(blob_prefix.len + TAG_SIZE)) {
            PyErr_SetString(PyExc_ValueError, "row too large");
            goto done;
        }
        widths[r] = width;
        if (plain > max_plain) max_plain = plain;
        out_size += per_row + plain;
    }
    result = PyBytes_FromStringAndSize(NULL, out_size);
    if (!result) goto done;
    scratch = PyMem_Malloc((size_t)max_plain);
    ad = PyMem_Malloc((size_t)ad_prefix.len + 8);
    ctx = EVP_CIPHER_CTX_new();
    if (!scratch || !ad || !ctx) { Py_CLEAR(result); PyErr_NoMemory(); goto done; }
    memcpy(ad, ad_prefix.buf, (size_t)ad_prefix.len);

    /* Pass 2 (GIL released): serialise, encrypt, frame. */
    int ok = 1;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, (const unsigned char *)key.buf, NULL) != 1)
        ok = 0;
    unsigned char nonce[NONCE_SIZE];
    put_be32(nonce, (uint32_t)attempt);
    const slice_t *value = values;
    for (Py_ssize_t r = 0; ok && r < nrows; r++) {
        uint64_t number = (uint64_t)first_row + (uint64_t)r;
        Py_ssize_t width = widths[r], plain = 1;
        scratch[0] = 0x00;
        for (Py_ssize_t c = 0; c < width; c++, value++) {
            if (c) scratch[plain++] = 0x00;
            memcpy(scratch + plain, value->data, (size_t)value->size);
            plain += value->size;
        }
        put_be64(nonce + 4, number);
        put_be64(ad + ad_prefix.len, number);
        memcpy(out, fixed.buf, (size_t)fixed.len);
        out += fixed.len;
        put_be64(out, number);
        put_be32(out + 8, (uint32_t)(blob_prefix.len + plain + TAG_SIZE));
        out += 12;
        memcpy(out, blob_prefix.buf, (size_t)blob_prefix.len);
        out += blob_prefix.len;
        int len = 0;
        if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1
            || EVP_EncryptUpdate(ctx, NULL, &len, ad, (int)(ad_prefix.len + 8)) != 1
            || EVP_EncryptUpdate(ctx, out, &len, scratch, (int)plain) != 1
            || EVP_EncryptFinal_ex(ctx, out + len, &len) != 1
            || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_SIZE, out + plain) != 1) {
            ok = 0;
            break;
        }
        out += plain + TAG_SIZE;
    }
    Py_END_ALLOW_THREADS
    if (!ok) {
        Py_CLEAR(result);
        ERR_clear_error();
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL AES-256-GCM failed");
    }

done:
    if (ctx) EVP_CIPHER_CTX_free(ctx);
    for (Py_ssize_t i = 0; i < nheld; i++) Py_DECREF(held[i]);
    PyMem_Free(held);
    PyMem_Free(scratch);
    PyMem_Free(ad);
    PyMem_Free(values);
    PyMem_Free(widths);
    PyBuffer_Release(&key);
    PyBuffer_Release(&ad_prefix);
    PyBuffer_Release(&fixed);
    PyBuffer_Release(&blob_prefix);
    return result;
}

static PyMethodDef methods[] = {
    {"encrypt_copy_tuples", encrypt_copy_tuples, METH_VARARGS,
     "Encrypt consecutive rows and frame them as PostgreSQL binary COPY tuples; "
     "None if a row needs the general row format."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "csvault.crypto._rowframe",
    "The ingest's per-row encryption and COPY framing in C (see rows.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__rowframe(void) { return PyModule_Create(&module); }
