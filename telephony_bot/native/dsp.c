/*
 * telephony_bot.native._dsp: per-frame signal kernels the live path runs on every 20 ms frame
 * of every call, where numpy's per-call overheads cost more than the arithmetic.
 *
 * Polyphase: the inner loop of media.resample.Resampler.
 * The filter (polyphase taps, designed in numpy) and the stream semantics are the Python
 * class's; this only computes a chunk's outputs: output i sits at upsampled position
 * frac + i*down, i.e. input window n0 = pos / up and phase p = pos % up, and is the dot
 * product of that window with phase p's taps. Every 20 ms frame of every call runs through
 * it twice (caller 8 -> 24 kHz, bot 24 -> 8 kHz), where numpy's per-call overheads cost
 * more than the arithmetic.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline double s16le(const uint8_t *p)
{
    return (double)(int16_t)(p[0] | (p[1] << 8));
}

/* The bytes of int16 PCM (an even length), or -1 with the error set. */
static int get_pcm(PyObject *arg, Py_buffer *b)
{
    if (PyObject_GetBuffer(arg, b, PyBUF_SIMPLE) < 0)
        return -1;
    if (b->len % 2) {
        Py_ssize_t n = b->len;
        PyBuffer_Release(b);
        PyErr_Format(PyExc_ValueError, "int16 PCM must have an even byte length, got %zd", n);
        return -1;
    }
    return 0;
}

typedef struct {
    PyObject_HEAD
    double *taps; /* up rows of k taps, each row reversed (window . row = output) */
    double *buf;  /* k-1 samples of history, then the chunk */
    Py_ssize_t buf_cap;
    double *acc; /* one phase's outputs being summed */
    Py_ssize_t acc_cap;
    long up, down, k, frac;
} Poly;

static int Poly_init(Poly *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"taps", "up", "down", NULL};
    Py_buffer t;
    long up, down;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*ll", kwlist, &t, &up, &down))
        return -1;
    Py_ssize_t n = t.len / (Py_ssize_t)sizeof(double);
    if (up <= 0 || down <= 0 || n <= 0 || n % up || t.len % (Py_ssize_t)sizeof(double)) {
        PyBuffer_Release(&t);
        PyErr_SetString(PyExc_ValueError, "taps must be up x k float64 values, up/down > 0");
        return -1;
    }
    PyMem_Free(self->taps);
    PyMem_Free(self->buf);
    self->taps = PyMem_Malloc((size_t)t.len);
    self->k = (long)(n / up);
    self->buf_cap = self->k - 1 + 4096;
    self->buf = PyMem_Calloc((size_t)self->buf_cap, sizeof(double));
    if (!self->taps || !self->buf) {
        PyBuffer_Release(&t);
        PyErr_NoMemory();
        return -1;
    }
    memcpy(self->taps, t.buf, (size_t)t.len);
    PyBuffer_Release(&t);
    self->up = up;
    self->down = down;
    self->frac = 0;
    return 0;
}

static void Poly_dealloc(Poly *self)
{
    PyMem_Free(self->taps);
    PyMem_Free(self->buf);
    PyMem_Free(self->acc);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Poly_reset(Poly *self, PyObject *Py_UNUSED(ignored))
{
    memset(self->buf, 0, (size_t)(self->k - 1) * sizeof(double));
    self->frac = 0;
    Py_RETURN_NONE;
}

/* process(pcm: bytes-like int16 LE) -> bytes int16 LE */
static PyObject *Poly_process(Poly *self, PyObject *arg)
{
    Py_buffer b;
    if (get_pcm(arg, &b) < 0)
        return NULL;
    const long up = self->up, down = self->down, k = self->k, nh = k - 1;
    const Py_ssize_t n = b.len / 2;
    if (nh + n > self->buf_cap) {
        Py_ssize_t cap = nh + n;
        double *nb = PyMem_Malloc((size_t)cap * sizeof(double));
        if (!nb) {
            PyBuffer_Release(&b);
            return PyErr_NoMemory();
        }
        memcpy(nb, self->buf, (size_t)nh * sizeof(double));
        PyMem_Free(self->buf);
        self->buf = nb;
        self->buf_cap = cap;
    }
    const uint8_t *in = b.buf;
    double *buf = self->buf;
    for (Py_ssize_t i = 0; i < n; i++)
        buf[nh + i] = s16le(in + 2 * i);
    PyBuffer_Release(&b);

    long long num = (long long)n * up - self->frac;
    Py_ssize_t count = num > 0 ? (Py_ssize_t)((num + down - 1) / down) : 0;
    PyObject *out = PyBytes_FromStringAndSize(NULL, count * 2);
    if (!out)
        return NULL;
    Py_ssize_t rows_max = count / up + 1;
    if (rows_max > self->acc_cap) {
        PyMem_Free(self->acc);
        self->acc = PyMem_Malloc((size_t)rows_max * sizeof(double));
        self->acc_cap = self->acc ? rows_max : 0;
        if (!self->acc) {
            Py_DECREF(out);
            return PyErr_NoMemory();
        }
    }
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
    double *acc = self->acc;
    /* Outputs r, r+up, r+2up, ... share a phase and their windows step by `down` inputs:
     * accumulate them tap by tap, so the inner loop runs over independent outputs (no
     * dependency chain, vectorisable) while each output still sums its taps in order. */
    for (long r = 0; r < up && r < count; r++) {
        long long pos0 = self->frac + (long long)r * down;
        const double *w0 = buf + pos0 / up;
        const double *t = self->taps + (pos0 % up) * k;
        Py_ssize_t rows = (count - r + up - 1) / up;
        memset(acc, 0, (size_t)rows * sizeof(double));
        for (long j = 0; j < k; j++) {
            const double tj = t[j];
            const double *w = w0 + j;
            if (down == 1) {
                for (Py_ssize_t m = 0; m < rows; m++)
                    acc[m] += w[m] * tj;
            } else {
                for (Py_ssize_t m = 0; m < rows; m++)
                    acc[m] += w[m * down] * tj;
            }
        }
        for (Py_ssize_t m = 0; m < rows; m++) {
            double v = rint(acc[m]);
            if (v > 32767.0)
                v = 32767.0;
            else if (v < -32768.0)
                v = -32768.0;
            int16_t s = (int16_t)v;
            Py_ssize_t i = r + m * up;
            o[2 * i] = (uint8_t)(s & 0xff);
            o[2 * i + 1] = (uint8_t)((uint16_t)s >> 8);
        }
    }
    memmove(buf, buf + n, (size_t)nh * sizeof(double));
    self->frac = (long)(self->frac + (long long)count * down - (long long)n * up);
    return out;
}

static PyMethodDef Poly_methods[] = {
    {"process", (PyCFunction)Poly_process, METH_O, "resample a chunk of int16 LE PCM"},
    {"reset", (PyCFunction)Poly_reset, METH_NOARGS, "forget the stream history"},
    {NULL}};

static PyTypeObject PolyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "telephony_bot.native._dsp.Polyphase",
    .tp_basicsize = sizeof(Poly),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Polyphase FIR inner loop: Polyphase(taps_bytes, up, down).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Poly_init,
    .tp_dealloc = (destructor)Poly_dealloc,
    .tp_methods = Poly_methods,
};

/* dbfs(pcm) -> float: RMS level of int16 LE PCM relative to full scale (32767), -120 for
 * digital silence or no samples (media.vad.frame_dbfs). */
static PyObject *mod_dbfs(PyObject *m, PyObject *arg)
{
    (void)m;
    Py_buffer b;
    if (get_pcm(arg, &b) < 0)
        return NULL;
    const uint8_t *in = b.buf;
    Py_ssize_t n = b.len / 2;
    double sum = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double x = s16le(in + 2 * i);
        sum += x * x;
    }
    PyBuffer_Release(&b);
    if (n == 0 || sum <= 0.0)
        return PyFloat_FromDouble(-120.0);
    double db = 10.0 * log10(sum / (double)n) - 20.0 * log10(32767.0);
    return PyFloat_FromDouble(db < -120.0 ? -120.0 : db);
}

static PyMethodDef mod_methods[] = {
    {"dbfs", mod_dbfs, METH_O, "RMS level of int16 LE PCM in dBFS (-120: silence)"},
    {NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_dsp",
                                    "per-frame DSP kernels for int16 PCM", -1, mod_methods};

PyMODINIT_FUNC PyInit__dsp(void)
{
    if (PyType_Ready(&PolyType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m)
        return NULL;
    Py_INCREF(&PolyType);
    if (PyModule_AddObject(m, "Polyphase", (PyObject *)&PolyType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
