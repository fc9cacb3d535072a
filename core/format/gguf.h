/* GGUF (llama.cpp's model file, versions 2 and 3) reader: metadata key/values, tensor table, and tensor
 * data of types F32, F16, BF16, Q8_0, Q4_0 and Q4_1 dequantised to float at load.
 * File layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 key/value count, the key/values
 * (string key, u32 value type, value; strings are u64 length + bytes; arrays are u32 element type, u64
 * count, elements), the tensor infos (string name, u32 n_dims, u64 dims[n_dims], u32 ggml type, u64
 * offset), padding to general.alignment (default 32), then the tensor data, each tensor at its offset
 * from the start of that section.
 * Dims are in GGUF (ggml) order: dims[0] is the contiguous one, so a Hugging Face weight of shape
 * (out, in) appears as dims {in, out}; reading it row-major gives back the (out, in) matrix.
 * Rules: open reads and checks every key/value and tensor info against the file size, so lookups never
 * touch the file and a read can only fail on I/O; every error names the file and the key, tensor or byte
 * offset at fault. Assumes a little-endian host; big-endian GGUF files are refused. */
#ifndef GKD_GGUF_H
#define GKD_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/error.h"

/* Metadata value types, numbered as in the file. */
typedef enum {
    GKD_GGUF_UINT8 = 0,
    GKD_GGUF_INT8 = 1,
    GKD_GGUF_UINT16 = 2,
    GKD_GGUF_INT16 = 3,
    GKD_GGUF_UINT32 = 4,
    GKD_GGUF_INT32 = 5,
    GKD_GGUF_FLOAT32 = 6,
    GKD_GGUF_BOOL = 7,
    GKD_GGUF_STRING = 8,
    GKD_GGUF_ARRAY = 9,
    GKD_GGUF_UINT64 = 10,
    GKD_GGUF_INT64 = 11,
    GKD_GGUF_FLOAT64 = 12,
} gkd_gguf_type;

/* Tensor data types, numbered as ggml numbers them. Only the ones gkd dequantises are named; a file may
 * hold others (K-quants...), which list fine but fail to read. */
typedef enum {
    GKD_GGML_F32 = 0,
    GKD_GGML_F16 = 1,
    GKD_GGML_Q4_0 = 2,
    GKD_GGML_Q4_1 = 3,
    GKD_GGML_Q8_0 = 8,
    GKD_GGML_BF16 = 30,
} gkd_ggml_type;

enum { GKD_GGUF_MAX_DIMS = 4, GKD_GGUF_DEFAULT_ALIGNMENT = 32 };

typedef struct {
    const char *name;
    int type; /* a gkd_ggml_type value, or another ggml type id */
    int n_dims;
    uint64_t dims[GKD_GGUF_MAX_DIMS]; /* GGUF order; dims past n_dims are 1 */
    uint64_t n_elements;
    uint64_t offset; /* absolute file offset of the first byte */
    uint64_t nbytes;
} gkd_gguf_tensor_info;

typedef struct gkd_gguf gkd_gguf;

/* ggml's name for a tensor type ("Q4_0", "Q6_K"...), or "?" for an id it does not know. */
const char *gkd_ggml_type_name(int type);

/* Opens and validates `path`. On success *out is a new handle the caller owns (free with gkd_gguf_close);
 * on failure *out is NULL and the status is GKD_ERR_IO, GKD_ERR_FORMAT (bad magic, version other than 2
 * or 3, truncation, unknown value or tensor type, tensor data outside the file) or GKD_ERR_NOMEM. The
 * handle keeps the file open until closed. */
gkd_status gkd_gguf_open(const char *path, gkd_gguf **out);
/* Closes the file and frees the handle and everything it gave out. Accepts NULL. */
void gkd_gguf_close(gkd_gguf *g);

const char *gkd_gguf_path(const gkd_gguf *g);
uint32_t gkd_gguf_version(const gkd_gguf *g);
uint32_t gkd_gguf_alignment(const gkd_gguf *g);

/* Metadata keys in file order. */
int gkd_gguf_kv_count(const gkd_gguf *g);
/* The i-th key, or NULL when i is out of range; *type (may be NULL) receives its value type. */
const char *gkd_gguf_kv_key(const gkd_gguf *g, int i, gkd_gguf_type *type);

/* Typed getters. A missing key is GKD_ERR_NOT_FOUND; a value of an incompatible type, or an integer
 * that does not fit, is GKD_ERR_FORMAT naming the key. Integers of any width convert when they fit;
 * get_f32 takes FLOAT32 and FLOAT64 (rounded). Returned strings are NUL-terminated, owned by the handle,
 * and may hold embedded NULs (the length is given where it matters). */
gkd_status gkd_gguf_get_u32(const gkd_gguf *g, const char *key, uint32_t *out);
gkd_status gkd_gguf_get_i64(const gkd_gguf *g, const char *key, int64_t *out);
gkd_status gkd_gguf_get_f32(const gkd_gguf *g, const char *key, float *out);
gkd_status gkd_gguf_get_bool(const gkd_gguf *g, const char *key, int *out);
gkd_status gkd_gguf_get_string(const gkd_gguf *g, const char *key, const char **out);

/* Arrays. get_array_len gives the element count and (elem_type may be NULL) the element type. */
gkd_status gkd_gguf_get_array_len(const gkd_gguf *g, const char *key, uint64_t *n, gkd_gguf_type *elem_type);
/* A string array (a token list) as borrowed arrays: (*items)[i] is NUL-terminated, (*lens)[i] its byte
 * length (lens may be NULL). Valid until gkd_gguf_close. */
gkd_status gkd_gguf_get_string_array(const gkd_gguf *g, const char *key, const char *const **items,
                                     const uint64_t **lens, uint64_t *n);
/* Copies a numeric array into dst[0..n), converting each element; n must equal the array's length. */
gkd_status gkd_gguf_get_array_f32(const gkd_gguf *g, const char *key, float *dst, uint64_t n);
gkd_status gkd_gguf_get_array_i32(const gkd_gguf *g, const char *key, int32_t *dst, uint64_t n);

/* Tensors in file order. */
int gkd_gguf_tensor_count(const gkd_gguf *g);
/* The i-th tensor, or NULL when i is out of range. Owned by the handle. */
const gkd_gguf_tensor_info *gkd_gguf_tensor_at(const gkd_gguf *g, int i);
/* The tensor called `name`, or NULL. */
const gkd_gguf_tensor_info *gkd_gguf_find_tensor(const gkd_gguf *g, const char *name);

/* Reads tensor `name` into dst[0..n_elements) as float, dequantising. A missing tensor is
 * GKD_ERR_NOT_FOUND; an element count other than the tensor's is GKD_ERR_SHAPE naming both; a type gkd
 * does not dequantise is GKD_ERR_FORMAT naming the tensor and type. Safe to call from several threads. */
gkd_status gkd_gguf_read_f32(const gkd_gguf *g, const char *name, float *dst, uint64_t n_elements);

/* Undoes llama.cpp's rotary permutation of a Q or K projection weight, giving back Hugging Face's layout
 * (the rotate_half convention, where a head's dims i and i + head_dim/2 form a rotary pair).
 * llama.cpp's convert_hf_to_gguf.py stores, per head, w.reshape(n_heads, 2, head_dim/2, cols)
 * .swapaxes(1, 2), so that rotary pairs are adjacent rows (2i, 2i+1) as its interleaved RoPE expects:
 * stored row h*head_dim + 2i + j holds Hugging Face row h*head_dim + j*head_dim/2 + i (j in {0, 1}).
 * w: (rows, cols) row-major, rows = n_heads * head_dim, read from GGUF as dims {cols, rows}; rewritten in
 * place. For K pass the number of key/value heads (the converter permutes K with n_head_kv). rows not a
 * multiple of 2 * n_heads is GKD_ERR_ARG; the scratch it needs (one head) may fail with GKD_ERR_NOMEM. */
gkd_status gkd_gguf_unpermute_qk(float *w, int rows, int cols, int n_heads);

#endif
