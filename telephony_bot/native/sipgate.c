/*
 * telephony_bot.native._sipgate: a PJSIP module that decides on every new INVITE before
 * pjsua sees it.
 *
 * pjsua creates a call's media transports (two sockets in PJSIP's I/O queue) before its
 * application callback (`onIncomingCall`) runs, so an INVITE refused there has already cost
 * what a flood exhausts. This module sits between PJSIP's transaction layer and its user
 * agent (priority 24): for each INVITE outside a dialog it hands the source address and the
 * raw message to a Python callable (`telephony_bot.sip.gate`), which answers None (go on to
 * pjsua) or (status, reason, [(header, value), ...]) — then the module answers statelessly
 * and pjsua never sees the request.
 *
 * `terminate()` ends an INVITE session at once (pjsip_inv_terminate), freeing its pjsua call
 * slot: a call answered but never ACKed otherwise holds it while PJSIP waits for the ACK.
 *
 * It also reports what PJSIP's transport layer drops (unparseable messages, missing
 * mandatory headers) through `pjsip_tpmgr_set_drop_data_cb`, and can send raw bytes through
 * PJSIP's own UDP transport (`send_raw`), so the Python side can answer a malformed INVITE
 * with 400 from the SIP port.
 *
 * The wheel ships no headers: the few structs used are declared here from PJSIP 2.15/2.16's
 * public headers (x86_64, LP64, default configuration: PJSIP_MAX_PKT_LEN 4000). Each
 * request's fields are checked for plausibility before use (the message buffer lies inside
 * the packet buffer, the source is a NUL-terminated IP address, the port is in range); a
 * request that fails the check passes through untouched and is counted (`layout_errors`).
 * The Python side also proves the whole path at start with a self-check INVITE.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

typedef int pj_status_t;
typedef int pj_bool_t;
typedef struct { char *ptr; long slen; } pj_str_t;
typedef struct pj_pool_t pj_pool_t;

typedef struct hdr {
    struct hdr *prev, *next;
    int type;
    pj_str_t name, sname;
    void *vptr;
} pjsip_hdr;

typedef struct pjsip_module {
    struct pjsip_module *prev, *next;
    pj_str_t name;
    int id;
    int priority;
    pj_status_t (*load)(void *);
    pj_status_t (*start)(void);
    pj_status_t (*stop)(void);
    pj_status_t (*unload)(void);
    pj_bool_t (*on_rx_request)(void *rdata);
    pj_bool_t (*on_rx_response)(void *rdata);
    pj_status_t (*on_tx_request)(void *tdata);
    pj_status_t (*on_tx_response)(void *tdata);
    void (*on_tsx_state)(void *tsx, void *event);
} pjsip_module;

typedef struct {
    void *tp;
    void *data;
    size_t len;
    pj_status_t status;
} pjsip_tp_dropped_data;

/* pjsip_rx_data, PJSIP 2.15.1/2.16 defaults (PJSIP_MAX_PKT_LEN 4000, PJ_INET6_ADDRSTRLEN 46) */
enum {
    OFF_PACKET = 320,
    PKT_MAX = 4000,
    OFF_SRC_NAME = 4368,
    SRC_NAME_LEN = 46,
    OFF_SRC_PORT = 4416,
    OFF_MSG_BUF = 4424,
    OFF_MSG_LEN = 4432,
};
#define MOD_PRIORITY 24 /* after the transaction layer (16), before the user agent (32) */
#define TRANSPORT_UDP 1
#define TRANSPORT_UDP6 129

static struct {
    void *(*get_endpt)(void);
    pj_status_t (*register_module)(void *, pjsip_module *);
    pj_status_t (*unregister_module)(void *, pjsip_module *);
    pj_status_t (*respond_stateless)(void *, void *, int, const pj_str_t *, const pjsip_hdr *,
                                     const void *);
    void *(*string_hdr_create)(pj_pool_t *, const pj_str_t *, const pj_str_t *);
    pj_pool_t *(*create_pool)(void *, const char *, size_t, size_t);
    void (*release_pool)(void *, pj_pool_t *);
    void *(*get_tpmgr)(void *);
    pj_status_t (*set_drop_cb)(void *, void (*)(pjsip_tp_dropped_data *));
    pj_status_t (*send_raw)(void *, int, const void *, const void *, size_t, const void *, int,
                            void *, void *);
    void *(*find_dialog)(const pj_str_t *, const pj_str_t *, const pj_str_t *, pj_bool_t);
    void *(*dlg_get_inv)(void *);
    pj_status_t (*inv_terminate)(void *, int, pj_bool_t);
    void (*dlg_dec_lock)(void *);
    int loaded;
} pj;

static pjsip_module mod;
static void *endpt;
static PyObject *decide_cb;
static PyObject *dropped_cb;
static unsigned long long n_seen, n_refused, n_layout_errors, n_callback_errors, n_dropped;

/* ---- the module's callbacks (PJSIP's threads) ---- */

static int plausible(const char *base, const char *buf, int len, const char *src, int port)
{
    const char *packet = base + OFF_PACKET;
    char tmp[16];
    if (buf < packet || buf >= packet + PKT_MAX || len <= 0 || len > PKT_MAX)
        return 0;
    if (buf + len > packet + PKT_MAX + 1)
        return 0;
    if (memchr(src, '\0', SRC_NAME_LEN) == NULL)
        return 0;
    if (port <= 0 || port > 65535)
        return 0;
    return inet_pton(AF_INET, src, tmp) == 1 || inet_pton(AF_INET6, src, tmp) == 1;
}

static void respond(void *rdata, int code, PyObject *reason, PyObject *headers)
{
    pj_pool_t *pool = pj.create_pool(endpt, "tbgate", 512, 512);
    pjsip_hdr list;
    pj_str_t text = {NULL, 0};
    Py_ssize_t i, n;
    list.prev = list.next = &list;
    if (pool == NULL)
        return;
    if (reason != NULL && PyUnicode_Check(reason)) {
        Py_ssize_t size;
        const char *s = PyUnicode_AsUTF8AndSize(reason, &size);
        if (s != NULL) {
            text.ptr = (char *)s;
            text.slen = (long)size;
        } else {
            PyErr_Clear();
        }
    }
    n = (headers != NULL && PySequence_Check(headers)) ? PySequence_Size(headers) : 0;
    for (i = 0; i < n; i++) {
        PyObject *item = PySequence_GetItem(headers, i);
        const char *name, *value;
        Py_ssize_t nlen, vlen;
        pjsip_hdr *h;
        if (item == NULL || !PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
            Py_XDECREF(item);
            PyErr_Clear();
            continue;
        }
        name = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(item, 0), &nlen);
        value = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(item, 1), &vlen);
        if (name != NULL && value != NULL) {
            pj_str_t hn = {(char *)name, (long)nlen}, hv = {(char *)value, (long)vlen};
            h = (pjsip_hdr *)pj.string_hdr_create(pool, &hn, &hv);
            if (h != NULL) { /* pj_list_push_back */
                h->next = &list;
                h->prev = list.prev;
                list.prev->next = h;
                list.prev = h;
            }
        } else {
            PyErr_Clear();
        }
        Py_DECREF(item);
    }
    pj.respond_stateless(endpt, rdata, code, text.slen ? &text : NULL, &list, NULL);
    pj.release_pool(endpt, pool);
}

static pj_bool_t on_rx_request(void *rdata)
{
    const char *base = (const char *)rdata;
    const char *buf = *(char *const *)(base + OFF_MSG_BUF);
    int len = *(const int *)(base + OFF_MSG_LEN);
    const char *src = base + OFF_SRC_NAME;
    int port = *(const int *)(base + OFF_SRC_PORT);
    pj_bool_t handled = 0;
    PyGILState_STATE gil;
    PyObject *res, *cb;

    if (decide_cb == NULL || buf == NULL || len < 7 || memcmp(buf, "INVITE ", 7) != 0)
        return 0;
    if (!plausible(base, buf, len, src, port)) {
        __atomic_add_fetch(&n_layout_errors, 1, __ATOMIC_RELAXED);
        return 0;
    }
    __atomic_add_fetch(&n_seen, 1, __ATOMIC_RELAXED);
    gil = PyGILState_Ensure();
    cb = decide_cb; /* uninstall() may clear it: hold our own reference */
    if (cb == NULL) {
        PyGILState_Release(gil);
        return 0;
    }
    Py_INCREF(cb);
    res = PyObject_CallFunction(cb, "siy#", src, port, buf, (Py_ssize_t)len);
    if (res == NULL) {
        __atomic_add_fetch(&n_callback_errors, 1, __ATOMIC_RELAXED);
        PyErr_WriteUnraisable(cb);
    } else if (res != Py_None) {
        PyObject *code = NULL, *reason = NULL, *headers = NULL;
        if (PyTuple_Check(res) && PyArg_ParseTuple(res, "O!OO", &PyLong_Type, &code, &reason,
                                                   &headers)) {
            int st = (int)PyLong_AsLong(code);
            if (st >= 300 && st < 700) {
                respond(rdata, st, reason, headers);
                handled = 1;
                __atomic_add_fetch(&n_refused, 1, __ATOMIC_RELAXED);
            }
        } else {
            PyErr_Clear();
            __atomic_add_fetch(&n_callback_errors, 1, __ATOMIC_RELAXED);
        }
    }
    Py_XDECREF(res);
    Py_DECREF(cb);
    PyGILState_Release(gil);
    return handled;
}

static void on_dropped(pjsip_tp_dropped_data *dd)
{
    PyGILState_STATE gil;
    PyObject *res, *cb;
    if (dropped_cb == NULL || dd == NULL || dd->data == NULL || dd->len == 0 || dd->len > 65536)
        return;
    __atomic_add_fetch(&n_dropped, 1, __ATOMIC_RELAXED);
    gil = PyGILState_Ensure();
    cb = dropped_cb;
    if (cb != NULL) {
        Py_INCREF(cb);
        res = PyObject_CallFunction(cb, "iy#", dd->status, (const char *)dd->data,
                                    (Py_ssize_t)dd->len);
        if (res == NULL)
            PyErr_WriteUnraisable(cb);
        Py_XDECREF(res);
        Py_DECREF(cb);
    }
    PyGILState_Release(gil);
}

/* ---- Python API ---- */

#define SYM(field, name)                                                                      \
    do {                                                                                      \
        *(void **)(&pj.field) = dlsym(h, name);                                               \
        if (pj.field == NULL) {                                                               \
            PyErr_Format(PyExc_OSError, "symbol %s not found", name);                         \
            return NULL;                                                                      \
        }                                                                                     \
    } while (0)

static PyObject *gate_load(PyObject *self, PyObject *args)
{
    const char *path;
    void *h;
    (void)self;
    if (!PyArg_ParseTuple(args, "s", &path))
        return NULL;
    if (pj.loaded)
        Py_RETURN_NONE;
    h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (h == NULL)
        h = dlopen(path, RTLD_NOW);
    if (h == NULL)
        return PyErr_Format(PyExc_OSError, "dlopen %s: %s", path, dlerror());
    SYM(get_endpt, "pjsua_get_pjsip_endpt");
    SYM(register_module, "pjsip_endpt_register_module");
    SYM(unregister_module, "pjsip_endpt_unregister_module");
    SYM(respond_stateless, "pjsip_endpt_respond_stateless");
    SYM(string_hdr_create, "pjsip_generic_string_hdr_create");
    SYM(create_pool, "pjsip_endpt_create_pool");
    SYM(release_pool, "pjsip_endpt_release_pool");
    SYM(get_tpmgr, "pjsip_endpt_get_tpmgr");
    SYM(set_drop_cb, "pjsip_tpmgr_set_drop_data_cb");
    SYM(send_raw, "pjsip_endpt_send_raw");
    SYM(find_dialog, "pjsip_ua_find_dialog");
    SYM(dlg_get_inv, "pjsip_dlg_get_inv_session");
    SYM(inv_terminate, "pjsip_inv_terminate");
    SYM(dlg_dec_lock, "pjsip_dlg_dec_lock");
    pj.loaded = 1;
    Py_RETURN_NONE;
}

static PyObject *gate_install(PyObject *self, PyObject *args)
{
    PyObject *decide, *dropped;
    pj_status_t st;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &decide, &dropped))
        return NULL;
    if (!pj.loaded)
        return PyErr_Format(PyExc_RuntimeError, "load() first");
    if (endpt != NULL)
        return PyErr_Format(PyExc_RuntimeError, "already installed");
    endpt = pj.get_endpt();
    if (endpt == NULL)
        return PyErr_Format(PyExc_RuntimeError, "no PJSIP endpoint (libInit first)");
    memset(&mod, 0, sizeof mod);
    mod.name.ptr = "mod-telephony-bot-gate";
    mod.name.slen = (long)strlen(mod.name.ptr);
    mod.id = -1;
    mod.priority = MOD_PRIORITY;
    mod.on_rx_request = on_rx_request;
    Py_INCREF(decide);
    Py_XSETREF(decide_cb, decide);
    if (dropped != Py_None) {
        Py_INCREF(dropped);
        Py_XSETREF(dropped_cb, dropped);
    }
    st = pj.register_module(endpt, &mod);
    if (st != 0) {
        endpt = NULL;
        Py_CLEAR(decide_cb);
        Py_CLEAR(dropped_cb);
        return PyErr_Format(PyExc_RuntimeError, "pjsip_endpt_register_module: status %d", st);
    }
    if (dropped_cb != NULL)
        pj.set_drop_cb(pj.get_tpmgr(endpt), on_dropped);
    Py_RETURN_NONE;
}

static PyObject *gate_uninstall(PyObject *self, PyObject *args)
{
    int destroyed = 0; /* the endpoint is gone (libDestroy): nothing to unregister from */
    (void)self;
    if (!PyArg_ParseTuple(args, "|p", &destroyed))
        return NULL;
    if (endpt != NULL && !destroyed) {
        pj.set_drop_cb(pj.get_tpmgr(endpt), NULL);
        pj.unregister_module(endpt, &mod);
    }
    endpt = NULL;
    Py_CLEAR(decide_cb);
    Py_CLEAR(dropped_cb);
    Py_RETURN_NONE;
}

static PyObject *gate_send_raw(PyObject *self, PyObject *args)
{
    const char *ip, *data;
    int port;
    Py_ssize_t len;
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    const void *addr;
    int addr_len, tp;
    pj_status_t st;
    (void)self;
    if (!PyArg_ParseTuple(args, "siy#", &ip, &port, &data, &len))
        return NULL;
    if (endpt == NULL)
        return PyErr_Format(PyExc_RuntimeError, "not installed");
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    if (inet_pton(AF_INET, ip, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)port);
        addr = &a4, addr_len = sizeof a4, tp = TRANSPORT_UDP;
    } else if (inet_pton(AF_INET6, ip, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)port);
        addr = &a6, addr_len = sizeof a6, tp = TRANSPORT_UDP6;
    } else {
        return PyErr_Format(PyExc_ValueError, "not an IP address: %s", ip);
    }
    st = pj.send_raw(endpt, tp, NULL, data, (size_t)len, addr, addr_len, NULL, NULL);
    return PyLong_FromLong(st);
}

static PyObject *gate_terminate(PyObject *self, PyObject *args)
{
    const char *cid, *ltag, *rtag;
    Py_ssize_t ncid, nltag, nrtag;
    int code;
    void *dlg, *inv;
    pj_status_t st = -1;
    (void)self;
    if (!PyArg_ParseTuple(args, "s#s#s#i", &cid, &ncid, &ltag, &nltag, &rtag, &nrtag, &code))
        return NULL;
    if (endpt == NULL)
        return PyErr_Format(PyExc_RuntimeError, "not installed");
    {
        pj_str_t c = {(char *)cid, (long)ncid}, l = {(char *)ltag, (long)nltag},
                 r = {(char *)rtag, (long)nrtag};
        dlg = pj.find_dialog(&c, &l, &r, 1); /* locked */
    }
    if (dlg == NULL)
        Py_RETURN_FALSE; /* already gone */
    inv = pj.dlg_get_inv(dlg);
    if (inv != NULL)
        st = pj.inv_terminate(inv, code, 1);
    pj.dlg_dec_lock(dlg);
    return PyBool_FromLong(st == 0);
}

static PyObject *gate_stats(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return Py_BuildValue("{sKsKsKsKsK}", "seen", n_seen, "refused", n_refused, "layout_errors",
                         n_layout_errors, "callback_errors", n_callback_errors, "dropped",
                         n_dropped);
}

static PyMethodDef methods[] = {
    {"load", gate_load, METH_VARARGS, "load(path): resolve PJSIP's symbols in the wheel"},
    {"install", gate_install, METH_VARARGS,
     "install(decide, dropped): register the module on pjsua's endpoint"},
    {"uninstall", gate_uninstall, METH_VARARGS,
     "uninstall(destroyed=False): unregister, or (after libDestroy) only forget"},
    {"send_raw", gate_send_raw, METH_VARARGS,
     "send_raw(ip, port, data) -> status: bytes through PJSIP's UDP transport"},
    {"terminate", gate_terminate, METH_VARARGS,
     "terminate(call_id, local_tag, remote_tag, code) -> bool: end an INVITE session now, "
     "no BYE (a registered thread)"},
    {"stats", gate_stats, METH_NOARGS, "counters"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_sipgate", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__sipgate(void)
{
    return PyModule_Create(&moddef);
}
