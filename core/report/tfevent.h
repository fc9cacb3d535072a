/* The bytes of a TensorBoard event file, written without TensorFlow or a protobuf library: a protobuf
 * wire-format writer (varints, 64- and 32-bit fixed fields, length-delimited fields), CRC32C and the
 * TFRecord framing. report_tensorboard.c builds the Event, Summary and plugin messages with these.
 * Rules:
 * - Every multi-byte value is written little endian byte by byte, whatever the host, as both formats
 *   require.
 * - A nested message is built in its own gkd_buf and appended with gkd_pb_message, which writes its
 *   length first (protobuf has no end marker).
 * - The gkd_buf rule holds: an allocation failure sets b->failed and later appends do nothing, so the
 *   caller checks once (gkd_buf_check) before writing the record. */
#ifndef GKD_TFEVENT_H
#define GKD_TFEVENT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/base/buf.h"
#include "core/base/error.h"

/* Wire type 0: int32/int64/uint64/bool/enum fields. A negative int64 is passed as its two's complement
 * (uint64_t)v, ten bytes, as protobuf encodes it. */
void gkd_pb_varint(gkd_buf *b, int field, uint64_t v);
/* Wire type 1: a double. */
void gkd_pb_double(gkd_buf *b, int field, double v);
/* Wire type 5: a float. */
void gkd_pb_float(gkd_buf *b, int field, float v);
/* Wire type 2: bytes or a string (n bytes at p). */
void gkd_pb_bytes(gkd_buf *b, int field, const void *p, size_t n);
/* A NUL-terminated string; NULL writes an empty one. */
void gkd_pb_string(gkd_buf *b, int field, const char *s);
/* An embedded message already encoded in msg (a failed msg fails b). */
void gkd_pb_message(gkd_buf *b, int field, const gkd_buf *msg);

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum TFRecord uses; computed here
 * with a 256-entry table, no library. crc32c("123456789") = 0xE3069283. */
uint32_t gkd_crc32c(const void *p, size_t n);
/* TFRecord's mask of a CRC: rotate right by 15, add 0xa282ead8. */
uint32_t gkd_crc32c_mask(uint32_t crc);

/* Appends one TFRecord to f: uint64 length, uint32 masked crc32c of those 8 bytes, the data, uint32
 * masked crc32c of the data. `path` names f in the error (GKD_ERR_IO) when writing fails. */
gkd_status gkd_tfrecord_write(FILE *f, const char *path, const void *data, size_t n);

#endif
