/* Protobuf wire format, CRC32C and TFRecord framing for TensorBoard event files (tfevent.h).
 * Rules: bytes are written little endian one at a time; nothing here knows what an Event is. */
#include "core/report/tfevent.h"

#include <errno.h>
#include <string.h>
#include <threads.h>

enum { PB_VARINT = 0, PB_FIXED64 = 1, PB_LEN = 2, PB_FIXED32 = 5 };

static void put_varint(gkd_buf *b, uint64_t v) {
    unsigned char out[10];
    int n = 0;
    while (v >= 0x80) {
        out[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (unsigned char)v;
    gkd_buf_put(b, (const char *)out, (size_t)n);
}

static void store_le(unsigned char *out, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) out[i] = (unsigned char)(v >> (8 * i));
}

static void put_le(gkd_buf *b, uint64_t v, int bytes) {
    unsigned char out[8];
    store_le(out, v, bytes);
    gkd_buf_put(b, (const char *)out, (size_t)bytes);
}

static void put_key(gkd_buf *b, int field, int wire_type) {
    put_varint(b, ((uint64_t)field << 3) | (uint64_t)wire_type);
}

void gkd_pb_varint(gkd_buf *b, int field, uint64_t v) {
    put_key(b, field, PB_VARINT);
    put_varint(b, v);
}

void gkd_pb_double(gkd_buf *b, int field, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_key(b, field, PB_FIXED64);
    put_le(b, bits, 8);
}

void gkd_pb_float(gkd_buf *b, int field, float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_key(b, field, PB_FIXED32);
    put_le(b, bits, 4);
}

void gkd_pb_bytes(gkd_buf *b, int field, const void *p, size_t n) {
    put_key(b, field, PB_LEN);
    put_varint(b, n);
    /* gkd_buf_put with n == 0 still terminates the buffer, so an empty field leaves it valid */
    gkd_buf_put(b, n ? (const char *)p : "", n);
}

void gkd_pb_string(gkd_buf *b, int field, const char *s) {
    gkd_pb_bytes(b, field, s ? s : "", s ? strlen(s) : 0);
}

void gkd_pb_message(gkd_buf *b, int field, const gkd_buf *msg) {
    if (msg->failed) {
        b->failed = 1;
        return;
    }
    gkd_pb_bytes(b, field, msg->data, msg->len);
}

/* ---- CRC32C ---- */

static uint32_t crc32c_table[256];
static once_flag crc32c_once = ONCE_FLAG_INIT;

static void crc32c_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc32c_table[i] = c;
    }
}

uint32_t gkd_crc32c(const void *p, size_t n) {
    call_once(&crc32c_once, crc32c_init);
    const unsigned char *s = p;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc32c_table[(c ^ s[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t gkd_crc32c_mask(uint32_t crc) {
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

gkd_status gkd_tfrecord_write(FILE *f, const char *path, const void *data, size_t n) {
    unsigned char head[12], tail[4];
    store_le(head, n, 8);
    store_le(head + 8, gkd_crc32c_mask(gkd_crc32c(head, 8)), 4);
    store_le(tail, gkd_crc32c_mask(gkd_crc32c(data, n)), 4);
    if (fwrite(head, 1, sizeof head, f) != sizeof head || fwrite(data, 1, n, f) != n ||
        fwrite(tail, 1, sizeof tail, f) != sizeof tail)
        return gkd_error_set(GKD_ERR_IO, "writing '%s' failed: %s", path, strerror(errno));
    return GKD_OK;
}
