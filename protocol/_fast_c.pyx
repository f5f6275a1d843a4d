# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The hot path compiled: the same functions as ``_fast_py`` (the reference), in Cython.

Reads the receive buffer through a C pointer and writes deliveries with one allocation and
``memcpy``; names a publisher repeats (exchange, routing key) are decoded once per ``scan`` call
and the same str and bytes objects reused. Must give exactly what ``_fast_py`` gives, events
and bytes (tests/protocol/test_fast.py runs both).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcmp, memcpy

from protocol import codec
from protocol.events import Ack, Publish

cdef unsigned int PUBLISH = 0x003C0028
cdef unsigned int ACK = 0x003C0050


cdef inline unsigned int _u16(const unsigned char* p) noexcept:
    return (p[0] << 8) | p[1]


cdef inline unsigned int _u32(const unsigned char* p) noexcept:
    return (<unsigned int>p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]


cdef inline unsigned long long _u64(const unsigned char* p) noexcept:
    return (<unsigned long long>_u32(p) << 32) | _u32(p + 4)


cdef inline void _put16(unsigned char* p, unsigned int v) noexcept:
    p[0] = (v >> 8) & 0xFF
    p[1] = v & 0xFF


cdef inline void _put32(unsigned char* p, unsigned long long v) noexcept:
    p[0] = (v >> 24) & 0xFF
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF


cdef inline void _put64(unsigned char* p, unsigned long long v) noexcept:
    _put32(p, v >> 32)
    _put32(p + 4, v & 0xFFFFFFFF)


cdef class _Names:
    """The last shortstr seen and its decoded text: a publisher sends the same names."""
    cdef bytes raw
    cdef str text

    cdef int take(self, const unsigned char* p, Py_ssize_t n) except -1:
        """Make (raw, text) the shortstr of ``n`` bytes of text at ``p``; -1 when not UTF-8."""
        if self.raw is not None and PyBytes_GET_SIZE(self.raw) == n + 1 and \
                memcmp(PyBytes_AS_STRING(self.raw) + 1, p, n) == 0:
            return 0
        raw = PyBytes_FromStringAndSize(<const char*>p - 1, n + 1)
        try:
            text = (<bytes>raw)[1:].decode("utf-8")
        except UnicodeDecodeError:
            return 1
        self.raw = raw
        self.text = text
        return 0


def scan(bytes buf, Py_ssize_t pos, Py_ssize_t limit, Py_ssize_t frame_max,
         Py_ssize_t max_size, set open_channels, set closing, dict content):
    """Up to ``limit`` publish / ack events from ``buf[pos:]``, and where each one ends."""
    cdef const unsigned char* b = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t size, stop, q, n, hpos, hsize, hstop, bpos, bsize, bstop, body_size
    cdef Py_ssize_t ex_at, ex_len, rk_at, rk_len, count = 0
    cdef unsigned int channel, index, bits
    cdef int last_ok = -1
    cdef const unsigned char* p
    cdef _Names exchanges = _Names()
    cdef _Names keys = _Names()
    events = []
    ends = []
    while count < limit and end - pos >= 8:
        size = _u32(b + pos + 3)
        stop = pos + 7 + size
        if b[pos] != 1 or size < 4 or size > frame_max or stop >= end or b[stop] != 0xCE:
            break
        channel = _u16(b + pos + 1)
        if <int>channel != last_ok:
            if channel not in open_channels or channel in closing or channel in content:
                break
            last_ok = channel
        p = b + pos + 7
        index = _u32(p)
        if index == ACK and size == 13:
            events.append(Ack(channel, _u64(p + 4), (p[12] & 1) != 0))
            pos = stop + 1
            ends.append(pos)
            count += 1
            continue
        if index != PUBLISH or size < 9:
            break
        # arguments: ticket (2), exchange, routing key, bits: exactly the payload
        q = 6
        ex_len = p[q]
        ex_at = q + 1
        q = ex_at + ex_len
        if q >= size:
            break
        rk_len = p[q]
        rk_at = q + 1
        q = rk_at + rk_len
        if q + 1 != size:
            break
        bits = p[q]
        # content header
        hpos = stop + 1
        if end - hpos < 8:
            break
        hsize = _u32(b + hpos + 3)
        hstop = hpos + 7 + hsize
        if b[hpos] != 2 or _u16(b + hpos + 1) != channel or hsize < 14 or hsize > frame_max \
                or hstop >= end or b[hstop] != 0xCE:
            break
        if _u16(b + hpos + 7) != 60:
            break
        body_size = <Py_ssize_t>_u64(b + hpos + 11)
        if _u64(b + hpos + 11) > <unsigned long long>max_size:
            break
        if body_size:
            bpos = hstop + 1
            if end - bpos < 8:
                break
            bsize = _u32(b + bpos + 3)
            bstop = bpos + 7 + bsize
            if b[bpos] != 3 or _u16(b + bpos + 1) != channel or bsize != body_size or \
                    bsize > frame_max or bstop >= end or b[bstop] != 0xCE:
                break
        else:
            bpos = bstop = hstop
        if exchanges.take(p + ex_at, ex_len) or keys.take(p + rk_at, rk_len):
            break
        props = PyBytes_FromStringAndSize(<const char*>b + hpos + 19, hsize - 12)
        body = PyBytes_FromStringAndSize(<const char*>b + bpos + 7, body_size) \
            if body_size else b""
        events.append(Publish(channel, exchanges.text, keys.text, (bits & 1) != 0,
                              (bits & 2) != 0, props, body, exchanges.raw, keys.raw))
        pos = bstop + 1
        ends.append(pos)
        count += 1
    return events, ends


def deliver_message(int channel, bytes consumer_tag, unsigned long long delivery_tag,
                    bint redelivered, bytes exchange, bytes routing_key, bytes props,
                    bytes body, Py_ssize_t frame_max):
    """basic.deliver plus its content in one buffer (one allocation)."""
    cdef Py_ssize_t size = PyBytes_GET_SIZE(body)
    if not size or size > frame_max - 8:
        return codec.deliver_message(channel, consumer_tag, delivery_tag, redelivered,
                                     exchange, routing_key, props, body, frame_max)
    cdef Py_ssize_t ct = PyBytes_GET_SIZE(consumer_tag)
    cdef Py_ssize_t ex = PyBytes_GET_SIZE(exchange)
    cdef Py_ssize_t rk = PyBytes_GET_SIZE(routing_key)
    cdef Py_ssize_t pr = PyBytes_GET_SIZE(props)
    cdef Py_ssize_t method_size = 13 + ct + ex + rk
    cdef Py_ssize_t total = 8 + method_size + 8 + 12 + pr + 8 + size
    out = PyBytes_FromStringAndSize(NULL, total)
    cdef unsigned char* w = <unsigned char*>PyBytes_AS_STRING(out)
    # method frame
    w[0] = 1
    _put16(w + 1, channel)
    _put32(w + 3, method_size)
    w[7] = 0
    w[8] = 0x3C
    w[9] = 0
    w[10] = 0x3C
    w += 11
    memcpy(w, PyBytes_AS_STRING(consumer_tag), ct)
    w += ct
    _put64(w, delivery_tag)
    w[8] = 1 if redelivered else 0
    w += 9
    memcpy(w, PyBytes_AS_STRING(exchange), ex)
    w += ex
    memcpy(w, PyBytes_AS_STRING(routing_key), rk)
    w += rk
    w[0] = 0xCE
    # content header frame
    w[1] = 2
    _put16(w + 2, channel)
    _put32(w + 4, 12 + pr)
    _put16(w + 8, 60)
    _put16(w + 10, 0)
    _put64(w + 12, size)
    w += 20
    memcpy(w, PyBytes_AS_STRING(props), pr)
    w += pr
    w[0] = 0xCE
    # body frame
    w[1] = 3
    _put16(w + 2, channel)
    _put32(w + 4, size)
    w += 8
    memcpy(w, PyBytes_AS_STRING(body), size)
    w[size] = 0xCE
    return out
