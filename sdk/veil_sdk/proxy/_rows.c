/* veil_sdk.proxy._rows: the row rewrite's hot loop (RowMasker.rewrite in rows.py) in C.
 *
 * It walks a run of DataRow messages, copies the untouched spans, calls the Python maskers on
 * the masked fields and frames what they return, exactly as the pure-Python loop in rows.py does
 * (tests/proxy/test_rows.py runs both on the same rows and compares the bytes). The maskers stay
 * Python callables; only the walking, slicing and framing is compiled. Built when a C compiler is
 * there (setup.py marks it optional); without it, or with VEIL_PROXY_PURE_PYTHON=1, rows.py runs
 * its own loop.
 *
 * rewrite(rows, out, actions, count, encoding, careful, failed) -> int
 *   rows      the DataRows, back to back (any buffer)
 *   out       a list: the rewritten rows are appended to it as one bytes object
 *   actions   per field up to the last masked one: None (kept) or (masker, as_null, last), where
 *             last is a list [masked, framed, framed size] remembering the last mask framed
 *   count     the number of fields the result's RowDescription announced
 *   encoding  the Python codec of the client encoding
 *   careful   called with a row whose field count differs from `count`; returns its bytes
 *   failed    called with the exception a masker raised; returns the value to send instead
 * Returns the number of bytes appended. On a malformed row, `out` gets the whole rows before it
 * and wire.ProtocolError is raised.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *ProtocolError; /* veil_sdk.proxy.wire.ProtocolError */

static const char NULL_FIELD[4] = {'\xff', '\xff', '\xff', '\xff'}; /* a field's length word for NULL */

typedef struct {
    PyObject *bytes; /* the output, grown as needed; its length is `capacity` */
    Py_ssize_t size;
    Py_ssize_t capacity;
} Output;

static int
reserve(Output *o, Py_ssize_t more)
{
    if (o->size + more <= o->capacity)
        return 0;
    Py_ssize_t capacity = o->capacity * 2;
    if (capacity < o->size + more)
        capacity = o->size + more;
    if (_PyBytes_Resize(&o->bytes, capacity) < 0)
        return -1;
    o->capacity = capacity;
    return 0;
}

static int
put(Output *o, const char *data, Py_ssize_t length)
{
    if (length <= 0)
        return 0;
    if (reserve(o, length) < 0)
        return -1;
    memcpy(PyBytes_AS_STRING(o->bytes) + o->size, data, (size_t)length);
    o->size += length;
    return 0;
}

static inline int32_t
read_int32(const unsigned char *p)
{
    return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
}

static inline int16_t
read_int16(const unsigned char *p)
{
    return (int16_t)(((uint16_t)p[0] << 8) | p[1]);
}

static inline void
write_int32(char *p, int32_t value)
{
    uint32_t v = (uint32_t)value;
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

/* The exception being raised, taken (the error indicator is cleared). */
static PyObject *
take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL && value != NULL)
        PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
#endif
}

/* masker(value), or failed(the exception) when the masker raised an Exception (a value is never
 * let through because its masker failed); NULL when either raised something else. */
static PyObject *
call_masker(PyObject *masker, PyObject *value, PyObject *failed)
{
    PyObject *masked = PyObject_CallOneArg(masker, value);
    if (masked != NULL || !PyErr_ExceptionMatches(PyExc_Exception))
        return masked;
    PyObject *error = take_exception();
    if (error == NULL)
        return NULL;
    masked = PyObject_CallOneArg(failed, error);
    Py_DECREF(error);
    return masked;
}

/* The framed form (length word and bytes) of a masker's answer, remembered in `last`. */
static PyObject *
frame(PyObject *masked, const char *encoding, PyObject *last)
{
    PyObject *text = PyUnicode_CheckExact(masked) ? Py_NewRef(masked) : PyObject_Str(masked);
    if (text == NULL)
        return NULL;
    PyObject *data = PyUnicode_AsEncodedString(text, encoding, "replace");
    Py_DECREF(text);
    if (data == NULL)
        return NULL;
    Py_ssize_t length = PyBytes_GET_SIZE(data);
    if (length > INT32_MAX) {
        Py_DECREF(data);
        PyErr_SetString(ProtocolError, "malformed DataRow");
        return NULL;
    }
    PyObject *framed = PyBytes_FromStringAndSize(NULL, 4 + length);
    if (framed == NULL) {
        Py_DECREF(data);
        return NULL;
    }
    write_int32(PyBytes_AS_STRING(framed), (int32_t)length);
    memcpy(PyBytes_AS_STRING(framed) + 4, PyBytes_AS_STRING(data), (size_t)length);
    Py_DECREF(data);
    PyObject *size = PyLong_FromSsize_t(4 + length);
    if (size == NULL) {
        Py_DECREF(framed);
        return NULL;
    }
    PyList_SetItem(last, 0, Py_NewRef(masked));
    PyList_SetItem(last, 1, Py_NewRef(framed));
    PyList_SetItem(last, 2, size);
    return framed;
}

static PyObject *
rewrite(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "rewrite() takes 7 arguments");
        return NULL;
    }
    PyObject *rows = args[0], *out = args[1], *actions = args[2], *careful = args[5], *failed = args[6];
    if (!PyList_Check(out) || !PyTuple_Check(actions) || !PyUnicode_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "rewrite(rows, out: list, actions: tuple, count, encoding: str...)");
        return NULL;
    }
    long count = PyLong_AsLong(args[3]);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    const char *encoding = PyUnicode_AsUTF8(args[4]);
    if (encoding == NULL)
        return NULL;
    Py_ssize_t n_actions = PyTuple_GET_SIZE(actions);
    for (Py_ssize_t i = 0; i < n_actions; i++) {
        PyObject *action = PyTuple_GET_ITEM(actions, i);
        if (action == Py_None)
            continue;
        PyObject *last = NULL;
        if (PyTuple_Check(action) && PyTuple_GET_SIZE(action) == 3)
            last = PyTuple_GET_ITEM(action, 2);
        if (last == NULL || !PyList_Check(last) || PyList_GET_SIZE(last) != 3) {
            PyErr_SetString(PyExc_TypeError, "an action is None or (masker, as_null, [masked, framed, n])");
            return NULL;
        }
    }

    Py_buffer view;
    if (PyObject_GetBuffer(rows, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *buf = (const unsigned char *)view.buf;
    const Py_ssize_t end = view.len;
    Output o = {PyBytes_FromStringAndSize(NULL, end + end / 4 + 64), 0, end + end / 4 + 64};
    if (o.bytes == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t size = 0, start = 0, whole_rows = 0; /* whole_rows: output bytes of complete rows */
    const char *malformed = NULL;

    while (start < end) {
        if (start + 5 > end) {
            malformed = "malformed DataRow";
            goto fail;
        }
        Py_ssize_t total = start + 1 + (Py_ssize_t)read_int32(buf + start + 1); /* where this row ends */
        if (total > end) {
            malformed = "a DataRow runs past the data";
            goto fail;
        }
        if (total < start + 7) {
            malformed = "a DataRow too short for its field count";
            goto fail;
        }
        if (read_int16(buf + start + 5) != count) { /* unlike its description: the careful way */
            PyObject *raw = PyBytes_FromStringAndSize((const char *)buf + start, total - start);
            if (raw == NULL)
                goto fail;
            PyObject *whole = PyObject_CallOneArg(careful, raw);
            Py_DECREF(raw);
            if (whole == NULL)
                goto fail;
            if (!PyBytes_Check(whole)) {
                Py_DECREF(whole);
                PyErr_SetString(PyExc_TypeError, "careful() must return bytes");
                goto fail;
            }
            int failed_put = put(&o, PyBytes_AS_STRING(whole), PyBytes_GET_SIZE(whole));
            size += PyBytes_GET_SIZE(whole);
            Py_DECREF(whole);
            if (failed_put < 0)
                goto fail;
            whole_rows = o.size;
            start = total;
            continue;
        }
        Py_ssize_t header = o.size; /* the header, once the new length is known */
        if (reserve(&o, 5) < 0)
            goto fail;
        o.size += 5;
        Py_ssize_t offset = start + 7, keep = start + 5, grown = 0;
        for (Py_ssize_t i = 0; i < n_actions; i++) {
            if (offset + 4 > end) {
                malformed = "malformed DataRow";
                goto fail;
            }
            Py_ssize_t length = read_int32(buf + offset);
            PyObject *action = PyTuple_GET_ITEM(actions, i);
            if (action == Py_None) {
                offset += length > 0 ? 4 + length : 4;
                continue;
            }
            Py_ssize_t stop = length > 0 ? offset + 4 + length : offset + 4;
            if (stop > total) {
                malformed = "a DataRow field runs past its message";
                goto fail;
            }
            PyObject *masker = PyTuple_GET_ITEM(action, 0), *last = PyTuple_GET_ITEM(action, 2);
            int as_null = PyObject_IsTrue(PyTuple_GET_ITEM(action, 1));
            if (as_null < 0)
                goto fail;
            const char *framed = NULL_FIELD;
            Py_ssize_t framed_size = 4;
            PyObject *framed_bytes = NULL; /* a new reference when framed here */
            if (!as_null) {
                PyObject *value;
                if (length < 0)
                    value = Py_NewRef(Py_None);
                else
                    value = PyUnicode_Decode(
                        (const char *)buf + offset + 4, stop - offset - 4, encoding, "replace");
                if (value == NULL)
                    goto fail;
                PyObject *masked = call_masker(masker, value, failed);
                Py_DECREF(value);
                if (masked == NULL)
                    goto fail;
                /* the same mask as the last value's: framed already */
                if (masked == PyList_GET_ITEM(last, 0)) {
                    PyObject *remembered = PyList_GET_ITEM(last, 1);
                    if (!PyBytes_Check(remembered)) {
                        Py_DECREF(masked);
                        PyErr_SetString(PyExc_TypeError, "a remembered mask must be bytes");
                        goto fail;
                    }
                    framed_bytes = Py_NewRef(remembered);
                }
                else if (masked != Py_None) {
                    framed_bytes = frame(masked, encoding, last);
                    if (framed_bytes == NULL) {
                        Py_DECREF(masked);
                        goto fail;
                    }
                }
                Py_DECREF(masked);
                if (framed_bytes != NULL) {
                    framed = PyBytes_AS_STRING(framed_bytes);
                    framed_size = PyBytes_GET_SIZE(framed_bytes);
                }
            }
            int failed_put =
                put(&o, (const char *)buf + keep, offset - keep) < 0 || put(&o, framed, framed_size) < 0;
            Py_XDECREF(framed_bytes);
            if (failed_put)
                goto fail;
            grown += framed_size - stop + offset;
            keep = offset = stop;
        }
        if (total > keep && put(&o, (const char *)buf + keep, total - keep) < 0)
            goto fail;
        Py_ssize_t length = total - start - 1 + grown;
        if (length < INT32_MIN || length > INT32_MAX) {
            malformed = "malformed DataRow";
            goto fail;
        }
        char *at = PyBytes_AS_STRING(o.bytes) + header;
        at[0] = 'D';
        write_int32(at + 1, (int32_t)length);
        size += total - start + grown;
        whole_rows = o.size;
        start = total;
    }
    PyBuffer_Release(&view);
    if (o.size > 0) {
        if (_PyBytes_Resize(&o.bytes, o.size) < 0)
            return NULL;
        int appended = PyList_Append(out, o.bytes);
        Py_DECREF(o.bytes);
        if (appended < 0)
            return NULL;
    }
    else {
        Py_DECREF(o.bytes);
    }
    return PyLong_FromSsize_t(size);

fail:
    PyBuffer_Release(&view);
    if (malformed != NULL)
        PyErr_SetString(ProtocolError, malformed);
    if (o.bytes != NULL && whole_rows > 0) { /* the whole rows before the bad one still go out */
        PyObject *error = take_exception();
        if (_PyBytes_Resize(&o.bytes, whole_rows) == 0) {
            if (PyList_Append(out, o.bytes) < 0)
                PyErr_Clear();
        }
        else {
            PyErr_Clear();
        }
        if (error != NULL) {
#if PY_VERSION_HEX >= 0x030C0000
            PyErr_SetRaisedException(error);
#else
            PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(error)), error, PyException_GetTraceback(error));
#endif
        }
    }
    Py_XDECREF(o.bytes);
    return NULL;
}

static PyMethodDef methods[] = {
    {"rewrite", (PyCFunction)(void (*)(void))rewrite, METH_FASTCALL,
     "rewrite(rows, out, actions, count, encoding, careful, failed) -> int: RowMasker.rewrite's loop."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rows", "veil-proxy's row rewrite loop, compiled (see rows.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__rows(void)
{
    PyObject *wire = PyImport_ImportModule("veil_sdk.proxy.wire");
    if (wire == NULL)
        return NULL;
    ProtocolError = PyObject_GetAttrString(wire, "ProtocolError");
    Py_DECREF(wire);
    if (ProtocolError == NULL)
        return NULL;
    return PyModule_Create(&module);
}
