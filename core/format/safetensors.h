/* safetensors checkpoints (https://github.com/huggingface/safetensors): read Hugging Face weights and
 * write gkd's own, in files PyTorch and the safetensors package load.
 * File layout: 8-byte little-endian header length N, N bytes of JSON header
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the data
 * buffer; offsets are relative to the buffer's start.
 * Rules: open validates the whole header before anything is read (offsets inside the buffer, sorted
 * without gaps or overlaps, covering it exactly; sizes matching dtype x shape; metadata values strings),
 * so a read can only fail on I/O; every error names the file and the tensor or the byte offset at fault.
 * Readers and writer assume a little-endian host, as the format does. The writer goes through a
 * temporary file and a rename, so a crash never leaves a half-written checkpoint under the final name. */
#ifndef GKD_SAFETENSORS_H
#define GKD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/error.h"

/* The dtypes of the format, named in files as the part after GKD_ST_ ("F32", "BF16", ...). */
typedef enum {
    GKD_ST_BOOL,
    GKD_ST_U8,
    GKD_ST_I8,
    GKD_ST_F8_E5M2,
    GKD_ST_F8_E4M3,
    GKD_ST_I16,
    GKD_ST_U16,
    GKD_ST_F16,
    GKD_ST_BF16,
    GKD_ST_I32,
    GKD_ST_U32,
    GKD_ST_F32,
    GKD_ST_F64,
    GKD_ST_I64,
    GKD_ST_U64,
    GKD_ST_DTYPE_COUNT,
} gkd_st_dtype;

enum { GKD_ST_MAX_DIMS = 8 };

/* A tensor to write: `data` holds prod(shape) elements of `dtype`, row-major, little-endian. Borrowed. */
typedef struct {
    const char *name;
    gkd_st_dtype dtype;
    int ndim; /* 0 for a scalar */
    const int64_t *shape;
    const void *data;
} gkd_st_tensor;

/* A tensor found in an open file. Owned by the gkd_safetensors handle. */
typedef struct {
    const char *name;
    gkd_st_dtype dtype;
    int ndim;
    int64_t shape[GKD_ST_MAX_DIMS];
    int64_t n_elements;
    uint64_t offset; /* absolute file offset of the first byte */
    uint64_t nbytes;
} gkd_st_info;

typedef struct gkd_safetensors gkd_safetensors;

/* "F32", "BF16", ... */
const char *gkd_st_dtype_name(gkd_st_dtype dtype);
/* Bytes per element (1, 2, 4 or 8). */
size_t gkd_st_dtype_size(gkd_st_dtype dtype);

/* IEEE half and bfloat16 conversions. Narrowing rounds to nearest even, overflows to infinity and keeps
 * NaNs NaN (sign and the payload's high bits kept); widening is exact. */
float gkd_st_f16_to_f32(uint16_t h);
float gkd_st_bf16_to_f32(uint16_t b);
uint16_t gkd_st_f32_to_f16(float x);
uint16_t gkd_st_f32_to_bf16(float x);

/* Opens and validates `path`. On success *out is a new handle the caller owns (free with
 * gkd_safetensors_close); on failure *out is NULL and the status is GKD_ERR_IO, GKD_ERR_FORMAT or
 * GKD_ERR_NOMEM. The handle keeps the file open until closed. */
gkd_status gkd_safetensors_open(const char *path, gkd_safetensors **out);
/* Closes the file and frees the handle and every string and gkd_st_info it gave out. Accepts NULL. */
void gkd_safetensors_close(gkd_safetensors *st);

const char *gkd_safetensors_path(const gkd_safetensors *st);
/* Tensors in data-offset order. */
int gkd_safetensors_count(const gkd_safetensors *st);
/* The i-th tensor (0 <= i < count), or NULL when i is out of range. */
const gkd_st_info *gkd_safetensors_info(const gkd_safetensors *st, int i);
/* The tensor called `name`, or NULL. */
const gkd_st_info *gkd_safetensors_find(const gkd_safetensors *st, const char *name);

/* Reads tensor `name` into dst[0..prod(expected_shape)) as float, converting F16 and BF16. The tensor
 * must have exactly `ndim` dims equal to expected_shape (else GKD_ERR_SHAPE naming the tensor and both
 * shapes) and dtype F32, F16 or BF16 (else GKD_ERR_SHAPE); a missing tensor is GKD_ERR_NOT_FOUND. */
gkd_status gkd_safetensors_read_f32(const gkd_safetensors *st, const char *name, float *dst, int ndim,
                                    const int64_t *expected_shape);
/* Copies tensor `name`'s bytes as stored into dst[0..nbytes), after checking that its dtype is `dtype`
 * and its shape expected_shape (else GKD_ERR_SHAPE). */
gkd_status gkd_safetensors_read_raw(const gkd_safetensors *st, const char *name, gkd_st_dtype dtype,
                                    void *dst, int ndim, const int64_t *expected_shape);

/* The "__metadata__" value for `key`, or NULL when absent. Owned by the handle. */
const char *gkd_safetensors_metadata(const gkd_safetensors *st, const char *key);
int gkd_safetensors_metadata_count(const gkd_safetensors *st);
/* The i-th metadata key in file order, or NULL when i is out of range. */
const char *gkd_safetensors_metadata_key(const gkd_safetensors *st, int i);

/* Writes `n` tensors and `n_meta` string metadata pairs to `path` (replacing it), laid out as the
 * reference library does: tensors ordered by element size (largest first) then name, so every tensor is
 * aligned to its element size, and the header padded with spaces to a multiple of 8. Borrows every
 * argument. Duplicate or reserved ("__metadata__") names, a negative dim or a NULL data pointer of a
 * non-empty tensor are GKD_ERR_ARG; the file is written to "<path>.tmp.<pid>", synced and renamed. */
gkd_status gkd_safetensors_write(const char *path, const gkd_st_tensor *tensors, int n,
                                 const char *const *meta_keys, const char *const *meta_values, int n_meta);

#endif
