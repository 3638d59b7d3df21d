/*
 * telephony_bot.native._mediaport: the media clock thread's side of a call, in C.
 *
 * pjmedia's conference bridge calls a port's get_frame()/put_frame() every 20 ms on its
 * clock thread. Through a pjsua2 AudioMediaPort each of those calls crosses into Python
 * (a SWIG director: take the GIL, build proxies, call, release), twice per frame per
 * call. Here the port is a plain pjmedia_port whose callbacks copy bytes into and out of
 * a `Crossing` (ring buffers under a mutex) and never touch Python: the GIL is not taken
 * on the clock thread at all. asyncio learns that caller audio arrived through one
 * eventfd per process, written at most once between two reads (`ack()`), so a media tick
 * wakes the event loop once for all the calls of a worker.
 *
 * The pjmedia structs below are declared by this file from PJSIP 2.15.1's public headers
 * (x86_64, LP64) - the wheel ships no headers. `self_check()` verifies the layout on the
 * loaded library (port info fields written by pjmedia_port_info_init, callbacks reached
 * through pjmedia_port_put_frame/get_frame) before any port is used; the Python side
 * falls back to the AudioMediaPort path when it fails.
 *
 * Crossing semantics are those of telephony_bot.media.crossing.PyCrossing (the Python
 * twin, used on the fallback path); tests run both against the same cases.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* ---- PJSIP 2.15.1 ABI (declared here; checked by self_check) ---- */

typedef int pj_status_t;
typedef struct { char *ptr; long slen; } pj_str_t;
typedef struct pj_pool_t pj_pool_t;

typedef struct {
    unsigned clock_rate, channel_count, frame_time_usec, bits_per_sample;
    uint32_t avg_bps, max_bps;
} pjmedia_audio_format_detail;

typedef struct {
    uint32_t id;
    int type;
    int detail_type;
    union {
        pjmedia_audio_format_detail aud;
        uint32_t vid[6];  /* pjmedia_video_format_detail: size, fps, avg_bps, max_bps */
        char user[1];
    } det;
} pjmedia_format;

typedef struct {
    pj_str_t name;
    uint32_t signature;
    int dir;
    pjmedia_format fmt;
} pjmedia_port_info;

enum { FRAME_NONE = 0, FRAME_AUDIO = 1 };

typedef struct {
    int type;
    void *buf;
    size_t size;
    uint64_t timestamp;
    uint32_t bit_info;
} pjmedia_frame;

typedef struct pjmedia_port {
    pjmedia_port_info info;
    struct { void *pdata; long ldata; } port_data;
    void *grp_lock;
    void *(*get_clock_src)(struct pjmedia_port *, int);
    pj_status_t (*put_frame)(struct pjmedia_port *, pjmedia_frame *);
    pj_status_t (*get_frame)(struct pjmedia_port *, pjmedia_frame *);
    pj_status_t (*on_destroy)(struct pjmedia_port *);
} pjmedia_port;

#define PJ_SUCCESS 0
#define PORT_SIGNATURE 0x54424d50u /* "PMBT" */

static struct {
    pj_status_t (*port_info_init)(pjmedia_port_info *, const pj_str_t *, unsigned, unsigned,
                                  unsigned, unsigned, unsigned);
    pj_status_t (*port_get_frame)(pjmedia_port *, pjmedia_frame *);
    pj_status_t (*port_put_frame)(pjmedia_port *, pjmedia_frame *);
    pj_pool_t *(*pool_create)(const char *, size_t, size_t);
    pj_status_t (*conf_add_port)(pj_pool_t *, pjmedia_port *, int *);
    pj_status_t (*conf_connect)(int, int);
    int loaded;
} pj;

/* ---- the wake-up shared by all crossings of the process ---- */

static int wake_fd = -1;
static atomic_int wake_signalled;
static atomic_ullong wake_writes, wake_write_errors;
static atomic_int wake_last_errno;

static void signal_wake(void)
{
    if (wake_fd >= 0 && !atomic_exchange(&wake_signalled, 1)) {
        uint64_t one = 1;
        if (write(wake_fd, &one, sizeof one) == (ssize_t)sizeof one) {
            atomic_fetch_add(&wake_writes, 1);
        } else {
            atomic_store(&wake_last_errno, errno);
            atomic_fetch_add(&wake_write_errors, 1);
            atomic_store(&wake_signalled, 0); /* nothing to read: let the next frame retry */
        }
    }
}

/* ---- Crossing: one call's buffers between the clock thread and asyncio ---- */

typedef struct {
    PyObject_HEAD
    pthread_mutex_t lock;
    Py_ssize_t frame_bytes;
    /* caller -> asyncio: a ring of whole frames, the oldest dropped when full */
    uint8_t *in_buf;
    Py_ssize_t in_max, in_head, in_count;
    /* asyncio -> caller: queued bot audio, bytes [p_start, p_start + p_len) of p_buf */
    uint8_t *p_buf;
    Py_ssize_t p_cap, p_start, p_len, p_max;
    int streaming, eos, paused, closed, signals;
    /* counters (see media.bridge.BridgeStats) */
    unsigned long long frames_in, frames_dropped, frames_out, underruns, played_bytes;
} Crossing;

static void crossing_push(Crossing *c, const uint8_t *pcm, Py_ssize_t n)
{
    pthread_mutex_lock(&c->lock);
    if (c->closed) {
        pthread_mutex_unlock(&c->lock);
        return;
    }
    if (c->in_count == c->in_max) {
        c->in_head = (c->in_head + 1) % c->in_max;
        c->in_count--;
        c->frames_dropped++;
    }
    uint8_t *slot = c->in_buf + ((c->in_head + c->in_count) % c->in_max) * c->frame_bytes;
    if (pcm && n > 0) {
        Py_ssize_t k = n < c->frame_bytes ? n : c->frame_bytes;
        memcpy(slot, pcm, (size_t)k);
        if (k < c->frame_bytes)
            memset(slot + k, 0, (size_t)(c->frame_bytes - k));
    } else {
        memset(slot, 0, (size_t)c->frame_bytes);
    }
    c->in_count++;
    c->frames_in++;
    int sig = c->signals;
    pthread_mutex_unlock(&c->lock);
    if (sig)
        signal_wake();
}

/* The next frame of bot audio into out (frame_bytes); 1 if audio, 0 if nothing to play. */
static int crossing_pull(Crossing *c, uint8_t *out)
{
    int audio = 0;
    Py_ssize_t n = c->frame_bytes;
    pthread_mutex_lock(&c->lock);
    if (c->paused) {
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    Py_ssize_t have = c->p_len;
    if (have == 0) {
        if (c->streaming && !c->eos)
            c->underruns++;
        c->streaming = 0;
    } else {
        if (have >= n) {
            memcpy(out, c->p_buf + c->p_start, (size_t)n);
            c->p_start += n;
            c->p_len -= n;
            c->streaming = 1;
        } else {
            memcpy(out, c->p_buf + c->p_start, (size_t)have);
            memset(out + have, 0, (size_t)(n - have));
            c->p_start = 0;
            c->p_len = 0;
            if (!c->eos)
                c->underruns++;
            c->streaming = 0;
        }
        if (c->p_len == 0)
            c->p_start = 0;
        c->played_bytes += (unsigned long long)(have < n ? have : n);
        c->frames_out++;
        audio = 1;
    }
    pthread_mutex_unlock(&c->lock);
    return audio;
}

static int Crossing_init(Crossing *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"frame_bytes", "inbound_frames", "playout_max_bytes", "signals", NULL};
    Py_ssize_t frame_bytes, in_max, p_max;
    int signals = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "nnn|p", kwlist, &frame_bytes, &in_max, &p_max,
                                     &signals))
        return -1;
    if (frame_bytes <= 0 || frame_bytes % 2 || in_max <= 0 || p_max < 0) {
        PyErr_SetString(PyExc_ValueError, "frame_bytes must be even and > 0, inbound_frames > 0");
        return -1;
    }
    if (self->in_buf) {
        PyErr_SetString(PyExc_RuntimeError, "Crossing already initialised");
        return -1;
    }
    self->in_buf = PyMem_RawCalloc((size_t)in_max, (size_t)frame_bytes);
    if (!self->in_buf) {
        PyErr_NoMemory();
        return -1;
    }
    pthread_mutex_init(&self->lock, NULL);
    self->frame_bytes = frame_bytes;
    self->in_max = in_max;
    self->p_max = p_max;
    self->signals = signals;
    return 0;
}

static void Crossing_dealloc(Crossing *self)
{
    if (self->in_buf)
        pthread_mutex_destroy(&self->lock);
    PyMem_RawFree(self->in_buf);
    PyMem_RawFree(self->p_buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Crossing_push(Crossing *self, PyObject *arg)
{
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    crossing_push(self, b.buf, b.len);
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
}

static PyObject *Crossing_pull(Crossing *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyBytes_FromStringAndSize(NULL, self->frame_bytes);
    if (!out)
        return NULL;
    if (!crossing_pull(self, (uint8_t *)PyBytes_AS_STRING(out))) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    return out;
}

static PyObject *Crossing_pop(Crossing *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = NULL;
    pthread_mutex_lock(&self->lock);
    if (self->in_count > 0) {
        out = PyBytes_FromStringAndSize(
            (const char *)self->in_buf + self->in_head * self->frame_bytes, self->frame_bytes);
        if (out) {
            self->in_head = (self->in_head + 1) % self->in_max;
            self->in_count--;
        }
        pthread_mutex_unlock(&self->lock);
        return out;
    }
    pthread_mutex_unlock(&self->lock);
    Py_RETURN_NONE;
}

/* Queue bot audio; returns the number of bytes refused because the playout buffer is full. */
static PyObject *Crossing_write(Crossing *self, PyObject *arg)
{
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_ssize_t n = b.len, refused = 0;
    pthread_mutex_lock(&self->lock);
    if (self->closed || n == 0) {
        pthread_mutex_unlock(&self->lock);
        PyBuffer_Release(&b);
        return PyLong_FromLong(0);
    }
    Py_ssize_t room = self->p_max - self->p_len;
    if (room < 0)
        room = 0;
    if (n > room) {
        refused = n - room;
        n = room & ~(Py_ssize_t)1;
    }
    if (n > 0) {
        if (self->p_start + self->p_len + n > self->p_cap) {
            if (self->p_len + n <= self->p_cap) {
                memmove(self->p_buf, self->p_buf + self->p_start, (size_t)self->p_len);
            } else {
                Py_ssize_t cap = self->p_cap ? self->p_cap : 16384;
                while (cap < self->p_len + n)
                    cap *= 2;
                uint8_t *nb = PyMem_RawMalloc((size_t)cap);
                if (!nb) {
                    pthread_mutex_unlock(&self->lock);
                    PyBuffer_Release(&b);
                    return PyErr_NoMemory();
                }
                if (self->p_len)
                    memcpy(nb, self->p_buf + self->p_start, (size_t)self->p_len);
                PyMem_RawFree(self->p_buf);
                self->p_buf = nb;
                self->p_cap = cap;
            }
            self->p_start = 0;
        }
        memcpy(self->p_buf + self->p_start + self->p_len, b.buf, (size_t)n);
        self->p_len += n;
    }
    self->eos = 0;
    pthread_mutex_unlock(&self->lock);
    PyBuffer_Release(&b);
    return PyLong_FromSsize_t(refused);
}

static PyObject *Crossing_clear(Crossing *self, PyObject *Py_UNUSED(ignored))
{
    pthread_mutex_lock(&self->lock);
    Py_ssize_t dropped = self->p_len;
    self->p_len = 0;
    self->p_start = 0;
    self->streaming = 0;
    self->paused = 0;
    pthread_mutex_unlock(&self->lock);
    return PyLong_FromSsize_t(dropped);
}

#define SETTER(name, field, value)                                                  \
    static PyObject *Crossing_##name(Crossing *self, PyObject *Py_UNUSED(ignored)) \
    {                                                                               \
        pthread_mutex_lock(&self->lock);                                            \
        self->field = value;                                                        \
        pthread_mutex_unlock(&self->lock);                                          \
        Py_RETURN_NONE;                                                             \
    }
SETTER(end_of_stream, eos, 1)
SETTER(pause, paused, 1)
SETTER(resume, paused, 0)

static PyObject *Crossing_close(Crossing *self, PyObject *Py_UNUSED(ignored))
{
    pthread_mutex_lock(&self->lock);
    self->closed = 1;
    self->p_len = 0;
    self->p_start = 0;
    pthread_mutex_unlock(&self->lock);
    Py_RETURN_NONE;
}

#define GETTER(name, expr)                                                \
    static PyObject *Crossing_get_##name(Crossing *self, void *closure)  \
    {                                                                     \
        (void)closure;                                                    \
        pthread_mutex_lock(&self->lock);                                  \
        unsigned long long v = (unsigned long long)(expr);                \
        pthread_mutex_unlock(&self->lock);                                \
        return PyLong_FromUnsignedLongLong(v);                            \
    }
GETTER(frames_in, self->frames_in)
GETTER(frames_dropped, self->frames_dropped)
GETTER(frames_out, self->frames_out)
GETTER(underruns, self->underruns)
GETTER(played_bytes, self->played_bytes)
GETTER(queued_bytes, self->p_len)
GETTER(pending_frames, self->in_count)
GETTER(frame_bytes, self->frame_bytes)

#define GS(name) {#name, (getter)Crossing_get_##name, NULL, NULL, NULL}
static PyGetSetDef Crossing_getset[] = {
    GS(frames_in), GS(frames_dropped), GS(frames_out), GS(underruns), GS(played_bytes),
    GS(queued_bytes), GS(pending_frames), GS(frame_bytes), {NULL}};

static PyMethodDef Crossing_methods[] = {
    {"push", (PyCFunction)Crossing_push, METH_O, "clock thread: queue one caller frame"},
    {"pull", (PyCFunction)Crossing_pull, METH_NOARGS, "clock thread: next bot frame or None"},
    {"pop", (PyCFunction)Crossing_pop, METH_NOARGS, "asyncio: oldest caller frame or None"},
    {"write", (PyCFunction)Crossing_write, METH_O, "asyncio: queue bot audio; bytes refused"},
    {"clear", (PyCFunction)Crossing_clear, METH_NOARGS, "drop queued bot audio; bytes dropped"},
    {"end_of_stream", (PyCFunction)Crossing_end_of_stream, METH_NOARGS, "reply complete"},
    {"pause", (PyCFunction)Crossing_pause, METH_NOARGS, "hold playout"},
    {"resume", (PyCFunction)Crossing_resume, METH_NOARGS, "end a pause"},
    {"close", (PyCFunction)Crossing_close, METH_NOARGS, "refuse all further audio"},
    {NULL}};

static PyTypeObject CrossingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "telephony_bot.native._mediaport.Crossing",
    .tp_basicsize = sizeof(Crossing),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One call's frame buffers between pjmedia's clock thread and asyncio.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Crossing_init,
    .tp_dealloc = (destructor)Crossing_dealloc,
    .tp_methods = Crossing_methods,
    .tp_getset = Crossing_getset,
};

/* ---- Port: a pjmedia_port in the conference bridge, feeding whichever crossing is attached ---- */

typedef struct {
    pjmedia_port base; /* first: pjmedia sees a pjmedia_port */
    pthread_mutex_t lock;
    Crossing *crossing; /* strong reference held by the Port object (taken with the GIL) */
    Py_ssize_t frame_bytes;
    char name[32];
} NativePort;

static pj_status_t port_put_frame(pjmedia_port *p, pjmedia_frame *f)
{
    NativePort *np = (NativePort *)p;
    pthread_mutex_lock(&np->lock);
    Crossing *c = np->crossing;
    if (c) {
        if (f->type == FRAME_AUDIO && f->buf && f->size > 0)
            crossing_push(c, f->buf, (Py_ssize_t)f->size);
        else
            crossing_push(c, NULL, 0); /* silence keeps the caller's clock */
    }
    pthread_mutex_unlock(&np->lock);
    return PJ_SUCCESS;
}

static pj_status_t port_get_frame(pjmedia_port *p, pjmedia_frame *f)
{
    NativePort *np = (NativePort *)p;
    int audio = 0;
    pthread_mutex_lock(&np->lock);
    Crossing *c = np->crossing;
    if (c && f->buf && (Py_ssize_t)f->size >= np->frame_bytes)
        audio = crossing_pull(c, f->buf);
    pthread_mutex_unlock(&np->lock);
    if (audio) {
        f->type = FRAME_AUDIO;
        f->size = (size_t)np->frame_bytes;
    } else {
        f->type = FRAME_NONE;
        f->size = 0;
    }
    return PJ_SUCCESS;
}

static pj_status_t port_on_destroy(pjmedia_port *p)
{
    (void)p; /* the memory is the Port object's; pjmedia only lets go of it */
    return PJ_SUCCESS;
}

typedef struct {
    PyObject_HEAD
    NativePort *port; /* never freed while the process runs: the bridge may hold it */
    int slot;
} Port;

static int Port_init(Port *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "clock_rate", "frame_ms", NULL};
    const char *name;
    unsigned rate, frame_ms = 20;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sI|I", kwlist, &name, &rate, &frame_ms))
        return -1;
    if (!pj.loaded) {
        PyErr_SetString(PyExc_RuntimeError, "load() the pjsua2 library first");
        return -1;
    }
    if (self->port) {
        PyErr_SetString(PyExc_RuntimeError, "Port already initialised");
        return -1;
    }
    NativePort *np = calloc(1, sizeof *np);
    if (!np) {
        PyErr_NoMemory();
        return -1;
    }
    pthread_mutex_init(&np->lock, NULL);
    snprintf(np->name, sizeof np->name, "%s", name);
    pj_str_t pname = {np->name, (long)strlen(np->name)};
    unsigned spf = rate * frame_ms / 1000;
    pj.port_info_init(&np->base.info, &pname, PORT_SIGNATURE, rate, 1, 16, spf);
    np->base.put_frame = port_put_frame;
    np->base.get_frame = port_get_frame;
    np->base.on_destroy = port_on_destroy;
    np->frame_bytes = (Py_ssize_t)spf * 2;
    self->port = np;
    self->slot = -1;
    return 0;
}

static void Port_dealloc(Port *self)
{
    /* A port added to the bridge stays allocated (the clock thread may still call it);
     * one never added is freed. */
    if (self->port) {
        pthread_mutex_lock(&self->port->lock);
        Crossing *c = self->port->crossing;
        self->port->crossing = NULL;
        pthread_mutex_unlock(&self->port->lock);
        Py_XDECREF(c);
        if (self->slot < 0)
            free(self->port);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Port_add_to_bridge(Port *self, PyObject *Py_UNUSED(ignored))
{
    if (self->slot >= 0)
        return PyLong_FromLong(self->slot);
    pj_status_t st;
    int slot = -1;
    Py_BEGIN_ALLOW_THREADS
    pj_pool_t *pool = pj.pool_create(self->port->name, 512, 512);
    st = pool ? pj.conf_add_port(pool, &self->port->base, &slot) : -1;
    Py_END_ALLOW_THREADS
    if (st != PJ_SUCCESS) {
        PyErr_Format(PyExc_RuntimeError, "pjsua_conf_add_port failed (status %d)", st);
        return NULL;
    }
    self->slot = slot;
    return PyLong_FromLong(slot);
}

static PyObject *Port_attach(Port *self, PyObject *arg)
{
    if (arg != Py_None && !PyObject_TypeCheck(arg, &CrossingType)) {
        PyErr_SetString(PyExc_TypeError, "attach() takes a Crossing or None");
        return NULL;
    }
    Crossing *nc = arg == Py_None ? NULL : (Crossing *)arg;
    Py_XINCREF(nc);
    if (nc && nc->frame_bytes != self->port->frame_bytes) {
        Py_DECREF(nc);
        PyErr_Format(PyExc_ValueError, "crossing frames are %zd bytes, the port's %zd",
                     nc->frame_bytes, self->port->frame_bytes);
        return NULL;
    }
    pthread_mutex_lock(&self->port->lock);
    Crossing *old = self->port->crossing;
    self->port->crossing = nc;
    pthread_mutex_unlock(&self->port->lock);
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

/* For tests and the self-check: drive the port as the conference bridge would. */
static PyObject *Port_put(Port *self, PyObject *arg)
{
    pjmedia_frame f = {0};
    Py_buffer b = {0};
    if (arg != Py_None) {
        if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
            return NULL;
        f.type = FRAME_AUDIO;
        f.buf = b.buf;
        f.size = (size_t)b.len;
    }
    pj_status_t st = pj.port_put_frame(&self->port->base, &f);
    if (arg != Py_None)
        PyBuffer_Release(&b);
    return PyLong_FromLong(st);
}

static PyObject *Port_get(Port *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyBytes_FromStringAndSize(NULL, self->port->frame_bytes);
    if (!out)
        return NULL;
    pjmedia_frame f = {.type = 77, .buf = PyBytes_AS_STRING(out),
                       .size = (size_t)self->port->frame_bytes};
    pj.port_get_frame(&self->port->base, &f);
    if (f.type != FRAME_AUDIO) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    return out;
}

static PyObject *Port_get_slot(Port *self, void *c)
{
    (void)c;
    return PyLong_FromLong(self->slot);
}

static PyObject *Port_get_frame_bytes(Port *self, void *c)
{
    (void)c;
    return PyLong_FromSsize_t(self->port->frame_bytes);
}

static PyObject *Port_get_info(Port *self, void *c)
{
    (void)c;
    pjmedia_port_info *i = &self->port->base.info;
    return Py_BuildValue("{s:I,s:I,s:I,s:I,s:I}", "signature", i->signature, "clock_rate",
                         i->fmt.det.aud.clock_rate, "channels", i->fmt.det.aud.channel_count,
                         "frame_time_usec", i->fmt.det.aud.frame_time_usec, "bits",
                         i->fmt.det.aud.bits_per_sample);
}

/* For tests: a native thread that plays pjmedia's clock for this port (no GIL, as the
 * real one): `frames` caller frames of a constant sample, `interval_us` apart. */
typedef struct {
    NativePort *port;
    long frames, interval_us;
} ClockArgs;

static void *clock_main(void *arg)
{
    ClockArgs *a = arg;
    uint8_t *buf = calloc(1, (size_t)a->port->frame_bytes);
    for (long i = 0; buf && i < a->frames; i++) {
        buf[0] = (uint8_t)(i & 0xff);
        pjmedia_frame f = {.type = FRAME_AUDIO, .buf = buf, .size = (size_t)a->port->frame_bytes};
        pj.port_put_frame(&a->port->base, &f);
        if (a->interval_us > 0)
            usleep((useconds_t)a->interval_us);
    }
    free(buf);
    free(a);
    return NULL;
}

static PyObject *Port_run_clock(Port *self, PyObject *args)
{
    long frames, interval_us;
    if (!PyArg_ParseTuple(args, "ll", &frames, &interval_us))
        return NULL;
    ClockArgs *a = malloc(sizeof *a);
    if (!a)
        return PyErr_NoMemory();
    *a = (ClockArgs){self->port, frames, interval_us};
    pthread_t t;
    if (pthread_create(&t, NULL, clock_main, a) != 0) {
        free(a);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    pthread_detach(t);
    Py_RETURN_NONE;
}

static PyGetSetDef Port_getset[] = {
    {"slot", (getter)Port_get_slot, NULL, "conference slot, -1 before add_to_bridge()", NULL},
    {"frame_bytes", (getter)Port_get_frame_bytes, NULL, NULL, NULL},
    {"info", (getter)Port_get_info, NULL, "the port info as pjmedia sees it", NULL},
    {NULL}};

static PyMethodDef Port_methods[] = {
    {"add_to_bridge", (PyCFunction)Port_add_to_bridge, METH_NOARGS,
     "pjsua_conf_add_port (on a PJSIP-registered thread); returns the slot"},
    {"attach", (PyCFunction)Port_attach, METH_O, "route frames to a Crossing (None: nowhere)"},
    {"put", (PyCFunction)Port_put, METH_O, "pjmedia_port_put_frame (bytes, or None: no audio)"},
    {"get", (PyCFunction)Port_get, METH_NOARGS, "pjmedia_port_get_frame: bytes or None"},
    {"run_clock", (PyCFunction)Port_run_clock, METH_VARARGS,
     "tests: run_clock(frames, interval_us) puts frames from a native thread, no GIL"},
    {NULL}};

static PyTypeObject PortType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "telephony_bot.native._mediaport.Port",
    .tp_basicsize = sizeof(Port),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A pjmedia port whose frame callbacks run in C on the clock thread.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Port_init,
    .tp_dealloc = (destructor)Port_dealloc,
    .tp_methods = Port_methods,
    .tp_getset = Port_getset,
};

/* ---- module functions ---- */

static PyObject *mod_load(PyObject *m, PyObject *arg)
{
    (void)m;
    const char *path = PyUnicode_AsUTF8(arg);
    if (!path)
        return NULL;
    void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (!h)
        h = dlopen(path, RTLD_NOW);
    if (!h) {
        PyErr_Format(PyExc_OSError, "dlopen %s: %s", path, dlerror());
        return NULL;
    }
#define SYM(field, name)                                                  \
    *(void **)(&pj.field) = dlsym(h, name);                               \
    if (!pj.field) {                                                      \
        PyErr_Format(PyExc_OSError, "%s not exported by %s", name, path); \
        return NULL;                                                      \
    }
    SYM(port_info_init, "pjmedia_port_info_init")
    SYM(port_get_frame, "pjmedia_port_get_frame")
    SYM(port_put_frame, "pjmedia_port_put_frame")
    SYM(pool_create, "pjsua_pool_create")
    SYM(conf_add_port, "pjsua_conf_add_port")
    SYM(conf_connect, "pjsua_conf_connect")
#undef SYM
    pj.loaded = 1;
    if (wake_fd < 0) {
        wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (wake_fd < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *mod_connect(PyObject *m, PyObject *args)
{
    (void)m;
    int src, dst;
    if (!PyArg_ParseTuple(args, "ii", &src, &dst))
        return NULL;
    if (!pj.loaded) {
        PyErr_SetString(PyExc_RuntimeError, "load() first");
        return NULL;
    }
    pj_status_t st;
    Py_BEGIN_ALLOW_THREADS
    st = pj.conf_connect(src, dst);
    Py_END_ALLOW_THREADS
    if (st != PJ_SUCCESS) {
        PyErr_Format(PyExc_RuntimeError, "pjsua_conf_connect(%d, %d) failed (status %d)", src,
                     dst, st);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *mod_wake_fd(PyObject *m, PyObject *Py_UNUSED(ignored))
{
    (void)m;
    return PyLong_FromLong(wake_fd);
}

/* asyncio side: the wake-up was seen; the next caller frame may signal again.
 * Drain first, re-arm second: while the flag is set no frame writes, so the read can only
 * take the write that woke us. Re-arming first let a frame's write land between the two
 * and be swallowed by the read, with the flag left set: no wake-up ever again (seen under
 * load as a worker whose readers starved while its calls' frames queued). */
static PyObject *mod_ack(PyObject *m, PyObject *Py_UNUSED(ignored))
{
    (void)m;
    uint64_t v = 0;
    if (wake_fd >= 0 && read(wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
        return PyErr_SetFromErrno(PyExc_OSError);
    atomic_store(&wake_signalled, 0);
    return PyLong_FromUnsignedLongLong(v);
}

static PyObject *mod_wake_state(PyObject *m, PyObject *Py_UNUSED(ignored))
{
    (void)m;
    return Py_BuildValue("{s:i,s:i,s:K,s:K,s:i}", "fd", wake_fd, "signalled",
                         atomic_load(&wake_signalled), "writes",
                         (unsigned long long)atomic_load(&wake_writes), "write_errors",
                         (unsigned long long)atomic_load(&wake_write_errors), "last_errno",
                         atomic_load(&wake_last_errno));
}

static PyMethodDef mod_methods[] = {
    {"wake_state", mod_wake_state, METH_NOARGS, "the wake-up's counters, for diagnostics"},
    {"load", mod_load, METH_O, "resolve the PJSIP functions in the loaded pjsua2 library"},
    {"connect", mod_connect, METH_VARARGS,
     "connect(src_slot, dst_slot): pjsua_conf_connect"},
    {"wake_fd", mod_wake_fd, METH_NOARGS, "the eventfd caller frames signal (-1 before load)"},
    {"ack", mod_ack, METH_NOARGS, "re-arm the wake-up; returns the signals counted"},
    {NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_mediaport",
                                    "pjmedia ports with C frame callbacks", -1, mod_methods};

PyMODINIT_FUNC PyInit__mediaport(void)
{
    if (PyType_Ready(&CrossingType) < 0 || PyType_Ready(&PortType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m)
        return NULL;
    Py_INCREF(&CrossingType);
    Py_INCREF(&PortType);
    if (PyModule_AddObject(m, "Crossing", (PyObject *)&CrossingType) < 0 ||
        PyModule_AddObject(m, "Port", (PyObject *)&PortType) < 0 ||
        PyModule_AddIntConstant(m, "SIGNATURE", PORT_SIGNATURE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
