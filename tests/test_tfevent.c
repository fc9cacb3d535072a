/* The event-file primitives (core/report/tfevent.h) against values written down from their specs: CRC-32C
 * check values (RFC 3720, appendix B.4, and the "123456789" check value of the Castagnoli CRC), protobuf
 * wire bytes from the encoding guide (protobuf.dev/programming-guides/encoding), and one whole TFRecord.
 * tests/test_export_tensorboard.sh checks the same bytes end to end with TensorBoard's own reader. */
#include "core/report/tfevent.h"
#include "tests/check.h"

#include <string.h>

static int bytes_are(const gkd_buf *b, const unsigned char *want, size_t n) {
    return !b->failed && b->len == n && memcmp(b->data, want, n) == 0;
}

static void test_crc32c(void) {
    CHECKF(gkd_crc32c("123456789", 9) == 0xE3069283u, "%08x", gkd_crc32c("123456789", 9));
    unsigned char zeros[32] = {0}, ones[32], inc[32];
    memset(ones, 0xFF, sizeof ones);
    for (int i = 0; i < 32; i++) inc[i] = (unsigned char)i;
    CHECK(gkd_crc32c(zeros, 32) == 0x8A9136AAu); /* RFC 3720 B.4: 32 bytes of zeros */
    CHECK(gkd_crc32c(ones, 32) == 0x62A8AB43u);  /* 32 bytes of 0xFF */
    CHECK(gkd_crc32c(inc, 32) == 0x46DD794Eu);   /* 0x00, 0x01, ..., 0x1F */
    CHECK(gkd_crc32c("", 0) == 0);
    /* the mask rotates right by 15 and adds the constant */
    CHECK(gkd_crc32c_mask(0) == 0xa282ead8u);
    CHECK(gkd_crc32c_mask(0x8000u) == 0xa282ead8u + 1u);
}

static void test_protobuf(void) {
    gkd_buf b = {0};
    gkd_pb_varint(&b, 1, 150); /* the guide's first example: 08 96 01 */
    CHECK(bytes_are(&b, (const unsigned char[]){0x08, 0x96, 0x01}, 3));
    b.len = 0;
    gkd_pb_varint(&b, 2, (uint64_t)(int64_t)-1); /* a negative int64: ten bytes */
    CHECK(bytes_are(
        &b, (const unsigned char[]){0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, 11));
    b.len = 0;
    gkd_pb_string(&b, 2, "testing"); /* the guide's string example: 12 07 74 65 73 74 69 6e 67 */
    CHECK(bytes_are(&b, (const unsigned char[]){0x12, 0x07, 't', 'e', 's', 't', 'i', 'n', 'g'}, 9));
    b.len = 0;
    gkd_pb_double(&b, 1, 1.0); /* wire type 1, IEEE bits little endian */
    CHECK(bytes_are(&b, (const unsigned char[]){0x09, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F}, 9));
    b.len = 0;
    gkd_pb_float(&b, 2, -2.0f); /* wire type 5 */
    CHECK(bytes_are(&b, (const unsigned char[]){0x15, 0, 0, 0, 0xC0}, 5));
    b.len = 0;
    gkd_buf inner = {0};
    gkd_pb_varint(&inner, 1, 150);
    gkd_pb_message(&b, 3, &inner); /* the guide's embedded message: 1a 03 08 96 01 */
    CHECK(bytes_are(&b, (const unsigned char[]){0x1a, 0x03, 0x08, 0x96, 0x01}, 5));
    b.len = 0;
    gkd_buf empty = {0};
    gkd_pb_message(&b, 3, &empty); /* a present but empty message: key and zero length */
    CHECK(bytes_are(&b, (const unsigned char[]){0x1a, 0x00}, 2));
    inner.failed = 1; /* a failed part fails the whole */
    gkd_pb_message(&b, 3, &inner);
    CHECK(b.failed);
    gkd_buf_free(&inner);
    gkd_buf_free(&b);
}

static void test_tfrecord(void) {
    char path[] = "/tmp/gkd-test-tfevent-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w+b") : NULL;
    if (!f) {
        CHECKF(0, "cannot create a temporary file");
        return;
    }
    CHECK(gkd_tfrecord_write(f, path, "abc", 3) == GKD_OK);
    rewind(f);
    unsigned char got[64];
    size_t n = fread(got, 1, sizeof got, f);
    fclose(f);
    remove(path);
    CHECK(n == 8 + 4 + 3 + 4);
    unsigned char len[8] = {3, 0, 0, 0, 0, 0, 0, 0};
    CHECK(memcmp(got, len, 8) == 0);
    uint32_t crc_len = gkd_crc32c_mask(gkd_crc32c(len, 8)), crc_data = gkd_crc32c_mask(gkd_crc32c("abc", 3));
    for (int i = 0; i < 4; i++) {
        CHECK(got[8 + i] == (unsigned char)(crc_len >> (8 * i)));
        CHECK(got[15 + i] == (unsigned char)(crc_data >> (8 * i)));
    }
    CHECK(memcmp(got + 12, "abc", 3) == 0);
}

int main(void) {
    test_crc32c();
    test_protobuf();
    test_tfrecord();
    return check_exit();
}
