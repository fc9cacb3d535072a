/* safetensors reader and writer. The reader parses and checks the whole JSON header at open and keeps
 * only the tensor table; tensor bytes are read on demand with pread, so several threads may read from
 * one handle at once and a checkpoint larger than memory can still be listed.
 * Rules: nothing read from the file is trusted before it is checked against the file size; every
 * error names the file. */
#include "core/format/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/json.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gkd's safetensors code assumes a little-endian host"
#endif

/* The reference library refuses headers above 100 MB; a larger length is a corrupt file, not a model. */
#define ST_MAX_HEADER 100000000ull
/* Largest integer a JSON double holds exactly. */
#define ST_MAX_JSON_INT 9007199254740992.0

typedef struct {
    const char *name;
    int index;
} name_index;

struct gkd_safetensors {
    char *path;
    int fd;
    int n;
    gkd_st_info *infos;  /* (n) in data-offset order; names owned here */
    name_index *by_name; /* (n) sorted by name, for lookup */
    int n_meta;
    char **meta_keys;   /* (n_meta) */
    char **meta_values; /* (n_meta) */
};

static const char *const dtype_names[GKD_ST_DTYPE_COUNT] = {
    [GKD_ST_BOOL] = "BOOL",       [GKD_ST_U8] = "U8",   [GKD_ST_I8] = "I8",   [GKD_ST_F8_E5M2] = "F8_E5M2",
    [GKD_ST_F8_E4M3] = "F8_E4M3", [GKD_ST_I16] = "I16", [GKD_ST_U16] = "U16", [GKD_ST_F16] = "F16",
    [GKD_ST_BF16] = "BF16",       [GKD_ST_I32] = "I32", [GKD_ST_U32] = "U32", [GKD_ST_F32] = "F32",
    [GKD_ST_F64] = "F64",         [GKD_ST_I64] = "I64", [GKD_ST_U64] = "U64",
};

const char *gkd_st_dtype_name(gkd_st_dtype dtype) {
    return (unsigned)dtype < GKD_ST_DTYPE_COUNT ? dtype_names[dtype] : "?";
}

size_t gkd_st_dtype_size(gkd_st_dtype dtype) {
    switch (dtype) {
    case GKD_ST_BOOL:
    case GKD_ST_U8:
    case GKD_ST_I8:
    case GKD_ST_F8_E5M2:
    case GKD_ST_F8_E4M3:
        return 1;
    case GKD_ST_I16:
    case GKD_ST_U16:
    case GKD_ST_F16:
    case GKD_ST_BF16:
        return 2;
    case GKD_ST_I32:
    case GKD_ST_U32:
    case GKD_ST_F32:
        return 4;
    case GKD_ST_F64:
    case GKD_ST_I64:
    case GKD_ST_U64:
        return 8;
    case GKD_ST_DTYPE_COUNT:
        break;
    }
    return 0;
}

static int dtype_from_name(const char *s, gkd_st_dtype *out) {
    for (int i = 0; i < GKD_ST_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_names[i]) == 0) {
            *out = (gkd_st_dtype)i;
            return 1;
        }
    }
    return 0;
}

/* ---- half and bfloat16 ---- */

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

float gkd_st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24 is exact in float */
        float mag = (float)mant * 0x1p-24f;
        return sign ? -mag : mag;
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

float gkd_st_bf16_to_f32(uint16_t b) {
    return bits_f32((uint32_t)b << 16);
}

/* Rounds sig >> shift to nearest, ties to even (1 <= shift <= 31). */
static uint32_t shift_round_even(uint32_t sig, int shift) {
    uint32_t q = sig >> shift;
    uint32_t rem = sig & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return q;
}

uint16_t gkd_st_f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    int exp = (int)((u >> 23) & 0xffu);
    uint32_t mant = u & 0x7fffffu;
    if (exp == 255) {
        if (!mant) return sign | 0x7c00u;
        /* NaN: keep the payload's high bits as numpy does, and never let it collapse to infinity */
        uint16_t m = (uint16_t)(mant >> 13);
        return sign | 0x7c00u | (m ? m : 1u);
    }
    int e = exp - 127;
    if (e > 15) return sign | 0x7c00u;
    if (e >= -14) {
        /* normal half; a rounding carry out of the mantissa correctly bumps the exponent, up to inf */
        uint32_t h = ((uint32_t)(e + 15) << 10) | (mant >> 13);
        uint32_t rem = mant & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
        return sign | (uint16_t)(h >= 0x7c00u ? 0x7c00u : h);
    }
    /* subnormal half (units of 2^-24); f32 subnormals and anything below 2^-25 round to zero */
    int shift = -e - 1;
    if (exp == 0 || shift > 24) return sign;
    return sign | (uint16_t)shift_round_even(mant | 0x800000u, shift);
}

uint16_t gkd_st_f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet, so it stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* ---- reading ---- */

/* Reads exactly n bytes at `offset`; a short read means the file shrank or was cut. */
static gkd_status read_exact(int fd, const char *path, void *dst, size_t n, uint64_t offset) {
    char *p = dst;
    while (n > 0) {
        ssize_t got = pread(fd, p, n, (off_t)offset);
        if (got < 0) {
            if (errno == EINTR) continue;
            return gkd_error_set(GKD_ERR_IO, "%s: read at offset %llu: %s", path, (unsigned long long)offset,
                                 strerror(errno));
        }
        if (got == 0)
            return gkd_error_set(GKD_ERR_FORMAT, "%s: truncated: no data at offset %llu", path,
                                 (unsigned long long)offset);
        p += got;
        n -= (size_t)got;
        offset += (uint64_t)got;
    }
    return GKD_OK;
}

static int json_index(const gkd_json *v, uint64_t *out) {
    if (!v || v->type != GKD_JSON_NUMBER) return 0;
    double x = v->number;
    if (!(x >= 0 && x <= ST_MAX_JSON_INT) || x != (double)(uint64_t)x) return 0;
    *out = (uint64_t)x;
    return 1;
}

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t len = 0;
    len += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

static int cmp_by_offset(const void *a, const void *b) {
    const gkd_st_info *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

static int cmp_name_index(const void *a, const void *b) {
    return strcmp(((const name_index *)a)->name, ((const name_index *)b)->name);
}

void gkd_safetensors_close(gkd_safetensors *st) {
    if (!st) return;
    if (st->fd >= 0) close(st->fd);
    for (int i = 0; i < st->n; i++) free((char *)st->infos[i].name);
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_values[i]);
    }
    free(st->infos);
    free(st->by_name);
    free(st->meta_keys);
    free(st->meta_values);
    free(st->path);
    free(st);
}

static gkd_status parse_metadata(gkd_safetensors *st, const gkd_json *meta) {
    if (meta->type == GKD_JSON_NULL) return GKD_OK;
    if (meta->type != GKD_JSON_OBJECT)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: \"__metadata__\" is not an object", st->path);
    st->meta_keys = calloc(meta->len ? meta->len : 1, sizeof *st->meta_keys);
    st->meta_values = calloc(meta->len ? meta->len : 1, sizeof *st->meta_values);
    if (!st->meta_keys || !st->meta_values)
        return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", st->path);
    for (size_t i = 0; i < meta->len; i++) {
        const gkd_json *v = meta->items[i];
        if (v->type != GKD_JSON_STRING)
            return gkd_error_set(GKD_ERR_FORMAT, "%s: metadata \"%s\" is not a string", st->path,
                                 meta->keys[i]);
        /* Metadata values are handed out as C strings: one holding \u0000 would be read cut short. */
        if (strlen(v->string) != v->len)
            return gkd_error_set(GKD_ERR_FORMAT, "%s: metadata \"%s\" holds a NUL character (\\u0000)",
                                 st->path, meta->keys[i]);
        st->meta_keys[i] = strdup(meta->keys[i]);
        st->meta_values[i] = strdup(v->string);
        st->n_meta = (int)i + 1;
        if (!st->meta_keys[i] || !st->meta_values[i])
            return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", st->path);
    }
    return GKD_OK;
}

/* Fills `info` from one header entry, checking that its byte span matches dtype x shape. */
static gkd_status parse_tensor(const char *path, const char *name, const gkd_json *v, gkd_st_info *info) {
    if (v->type != GKD_JSON_OBJECT)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", path, name);
    const char *dtype = gkd_json_get_string(v, "dtype", NULL);
    if (!dtype) return gkd_error_set(GKD_ERR_FORMAT, "%s: tensor '%s': missing \"dtype\"", path, name);
    if (!dtype_from_name(dtype, &info->dtype))
        return gkd_error_set(GKD_ERR_FORMAT, "%s: tensor '%s': unknown dtype \"%s\"", path, name, dtype);

    const gkd_json *shape = gkd_json_get(v, "shape");
    if (!shape || shape->type != GKD_JSON_ARRAY)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: tensor '%s': missing \"shape\" array", path, name);
    if (shape->len > GKD_ST_MAX_DIMS)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: tensor '%s': %zu dims, more than gkd's %d", path, name,
                             shape->len, GKD_ST_MAX_DIMS);
    info->ndim = (int)shape->len;
    uint64_t elsize = gkd_st_dtype_size(info->dtype);
    uint64_t count = 1;
    int overflow = 0;
    for (int d = 0; d < info->ndim; d++) {
        uint64_t dim;
        if (!json_index(shape->items[d], &dim))
            return gkd_error_set(GKD_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer",
                                 path, name, d);
        info->shape[d] = (int64_t)dim;
        if (dim && count > (UINT64_MAX / elsize) / dim) overflow = 1;
        count *= dim;
    }

    const gkd_json *offs = gkd_json_get(v, "data_offsets");
    uint64_t begin, end;
    if (!offs || offs->type != GKD_JSON_ARRAY || offs->len != 2 || !json_index(offs->items[0], &begin) ||
        !json_index(offs->items[1], &end) || end < begin)
        return gkd_error_set(GKD_ERR_FORMAT,
                             "%s: tensor '%s': \"data_offsets\" is not [begin, end] with 0 <= begin <= end",
                             path, name);
    char sh[160];
    format_shape(sh, sizeof sh, info->ndim, info->shape);
    if (overflow || count * elsize != end - begin)
        return gkd_error_set(
            GKD_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but %s %s needs %s",
            path, name, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)(end - begin),
            dtype, sh, overflow ? "more than 2^64" : "a different size");
    info->n_elements = (int64_t)count;
    info->offset = begin; /* relative until the header length is known to the caller */
    info->nbytes = end - begin;
    return GKD_OK;
}

/* Checks that the tensors tile the data buffer exactly, then makes their offsets absolute. */
static gkd_status check_layout(gkd_safetensors *st, uint64_t data_start, uint64_t data_len) {
    qsort(st->infos, (size_t)st->n, sizeof *st->infos, cmp_by_offset);
    uint64_t expect = 0;
    for (int i = 0; i < st->n; i++) {
        gkd_st_info *t = &st->infos[i];
        uint64_t end = t->offset + t->nbytes;
        if (end > data_len)
            return gkd_error_set(
                GKD_ERR_FORMAT,
                "%s: tensor '%s': data ends at file offset %llu, beyond the end of the file (%llu "
                "bytes): truncated or corrupt",
                st->path, t->name, (unsigned long long)(data_start + end),
                (unsigned long long)(data_start + data_len));
        if (t->offset < expect)
            return gkd_error_set(
                GKD_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s'", st->path,
                t->name, (unsigned long long)t->offset, (unsigned long long)end, st->infos[i - 1].name);
        if (t->offset > expect)
            return gkd_error_set(
                GKD_ERR_FORMAT, "%s: %llu unused bytes before tensor '%s' (at buffer offset %llu)", st->path,
                (unsigned long long)(t->offset - expect), t->name, (unsigned long long)expect);
        expect = end;
    }
    if (expect != data_len)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: %llu bytes after the last tensor's data (file offset %llu)",
                             st->path, (unsigned long long)(data_len - expect),
                             (unsigned long long)(data_start + expect));
    for (int i = 0; i < st->n; i++) st->infos[i].offset += data_start;
    return GKD_OK;
}

static gkd_status parse_header(gkd_safetensors *st, const gkd_json *root, uint64_t data_start,
                               uint64_t data_len) {
    if (root->type != GKD_JSON_OBJECT)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: header at offset 8 is not a JSON object", st->path);
    st->infos = calloc(root->len ? root->len : 1, sizeof *st->infos);
    if (!st->infos) return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", st->path);
    int seen_meta = 0;
    for (size_t i = 0; i < root->len; i++) {
        const char *key = root->keys[i];
        gkd_status s;
        if (strcmp(key, "__metadata__") == 0) {
            if (seen_meta++)
                return gkd_error_set(GKD_ERR_FORMAT, "%s: two \"__metadata__\" entries", st->path);
            s = parse_metadata(st, root->items[i]);
        } else {
            gkd_st_info *t = &st->infos[st->n];
            s = parse_tensor(st->path, key, root->items[i], t);
            if (s == GKD_OK) {
                if (!(t->name = strdup(key)))
                    return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", st->path);
                st->n++;
            }
        }
        if (s != GKD_OK) return s;
    }
    gkd_status s = check_layout(st, data_start, data_len);
    if (s != GKD_OK) return s;

    st->by_name = calloc(st->n ? (size_t)st->n : 1, sizeof *st->by_name);
    if (!st->by_name) return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", st->path);
    for (int i = 0; i < st->n; i++) st->by_name[i] = (name_index){st->infos[i].name, i};
    qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_name_index);
    for (int i = 1; i < st->n; i++)
        if (strcmp(st->by_name[i - 1].name, st->by_name[i].name) == 0)
            return gkd_error_set(GKD_ERR_FORMAT, "%s: tensor '%s' appears twice", st->path,
                                 st->by_name[i].name);
    return GKD_OK;
}

gkd_status gkd_safetensors_open(const char *path, gkd_safetensors **out) {
    *out = NULL;
    gkd_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", path);
    }
    st->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (st->fd < 0) {
        gkd_error_set(GKD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        gkd_safetensors_close(st);
        return GKD_ERR_IO;
    }

    gkd_status s = GKD_OK;
    char *header = NULL;
    gkd_json *root = NULL;
    struct stat sb;
    unsigned char len_bytes[8];
    uint64_t file_size = 0, header_len = 0;
    if (fstat(st->fd, &sb) != 0) {
        s = gkd_error_set(GKD_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    file_size = (uint64_t)sb.st_size;
    if (file_size < 8) {
        s = gkd_error_set(GKD_ERR_FORMAT, "%s: %llu bytes, too short for the 8-byte header length", path,
                          (unsigned long long)file_size);
        goto done;
    }
    if ((s = read_exact(st->fd, path, len_bytes, 8, 0)) != GKD_OK) goto done;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | len_bytes[i];
    if (header_len > file_size - 8 || header_len > ST_MAX_HEADER) {
        s = gkd_error_set(GKD_ERR_FORMAT, "%s: header length %llu (offset 0) exceeds the %s (%llu bytes)",
                          path, (unsigned long long)header_len,
                          header_len > ST_MAX_HEADER ? "100 MB limit" : "file size",
                          (unsigned long long)(header_len > ST_MAX_HEADER ? ST_MAX_HEADER : file_size));
        goto done;
    }
    if (!(header = malloc(header_len + 1))) {
        s = gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory for a %llu-byte header", path,
                          (unsigned long long)header_len);
        goto done;
    }
    if ((s = read_exact(st->fd, path, header, header_len, 8)) != GKD_OK) goto done;
    header[header_len] = '\0';

    char where[1200];
    snprintf(where, sizeof where, "%s: JSON header at file offset 8", path);
    if ((s = gkd_json_parse(header, header_len, where, &root)) != GKD_OK) goto done;
    s = parse_header(st, root, 8 + header_len, file_size - 8 - header_len);

done:
    gkd_json_free(root);
    free(header);
    if (s != GKD_OK) {
        gkd_safetensors_close(st);
        return s;
    }
    *out = st;
    return GKD_OK;
}

const char *gkd_safetensors_path(const gkd_safetensors *st) {
    return st->path;
}

int gkd_safetensors_count(const gkd_safetensors *st) {
    return st->n;
}

const gkd_st_info *gkd_safetensors_info(const gkd_safetensors *st, int i) {
    return i >= 0 && i < st->n ? &st->infos[i] : NULL;
}

const gkd_st_info *gkd_safetensors_find(const gkd_safetensors *st, const char *name) {
    name_index key = {name, 0};
    const name_index *hit = bsearch(&key, st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_name_index);
    return hit ? &st->infos[hit->index] : NULL;
}

const char *gkd_safetensors_metadata(const gkd_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

int gkd_safetensors_metadata_count(const gkd_safetensors *st) {
    return st->n_meta;
}

const char *gkd_safetensors_metadata_key(const gkd_safetensors *st, int i) {
    return i >= 0 && i < st->n_meta ? st->meta_keys[i] : NULL;
}

/* Finds `name` and checks its shape; the error names file, tensor and both shapes. */
static gkd_status find_checked(const gkd_safetensors *st, const char *name, int ndim, const int64_t *shape,
                               const gkd_st_info **out) {
    const gkd_st_info *t = gkd_safetensors_find(st, name);
    if (!t) return gkd_error_set(GKD_ERR_NOT_FOUND, "%s: no tensor '%s'", st->path, name);
    int same = t->ndim == ndim && (ndim == 0 || shape);
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        char want[160] = "(none)", found[160];
        if (ndim >= 0 && (ndim == 0 || shape)) format_shape(want, sizeof want, ndim, shape);
        format_shape(found, sizeof found, t->ndim, t->shape);
        return gkd_error_set(GKD_ERR_SHAPE, "%s: tensor '%s': expected shape %s, found %s", st->path, name,
                             want, found);
    }
    *out = t;
    return GKD_OK;
}

gkd_status gkd_safetensors_read_raw(const gkd_safetensors *st, const char *name, gkd_st_dtype dtype,
                                    void *dst, int ndim, const int64_t *expected_shape) {
    const gkd_st_info *t;
    gkd_status s = find_checked(st, name, ndim, expected_shape, &t);
    if (s != GKD_OK) return s;
    if (t->dtype != dtype)
        return gkd_error_set(GKD_ERR_SHAPE, "%s: tensor '%s': expected dtype %s, found %s", st->path, name,
                             gkd_st_dtype_name(dtype), gkd_st_dtype_name(t->dtype));
    return read_exact(st->fd, st->path, dst, t->nbytes, t->offset);
}

gkd_status gkd_safetensors_read_f32(const gkd_safetensors *st, const char *name, float *dst, int ndim,
                                    const int64_t *expected_shape) {
    const gkd_st_info *t;
    gkd_status s = find_checked(st, name, ndim, expected_shape, &t);
    if (s != GKD_OK) return s;
    if (t->dtype == GKD_ST_F32) return read_exact(st->fd, st->path, dst, t->nbytes, t->offset);
    if (t->dtype != GKD_ST_F16 && t->dtype != GKD_ST_BF16)
        return gkd_error_set(GKD_ERR_SHAPE, "%s: tensor '%s': expected dtype F32, F16 or BF16, found %s",
                             st->path, name, gkd_st_dtype_name(t->dtype));

    /* 16-bit data is converted through a bounded staging buffer, so reading never doubles memory */
    enum { CHUNK = 1 << 15 };
    uint16_t *buf = malloc(CHUNK * sizeof *buf);
    if (!buf) return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", st->path);
    float (*widen)(uint16_t) = t->dtype == GKD_ST_F16 ? gkd_st_f16_to_f32 : gkd_st_bf16_to_f32;
    for (int64_t done = 0; done < t->n_elements && s == GKD_OK;) {
        int64_t k = t->n_elements - done < CHUNK ? t->n_elements - done : CHUNK;
        s = read_exact(st->fd, st->path, buf, (size_t)k * 2, t->offset + (uint64_t)done * 2);
        for (int64_t i = 0; s == GKD_OK && i < k; i++) dst[done + i] = widen(buf[i]);
        done += k;
    }
    free(buf);
    return s;
}

/* ---- writing ---- */

typedef struct {
    const gkd_st_tensor *t;
    uint64_t nbytes;
} write_item;

/* The reference layout: larger elements first so each tensor is aligned to its element size. */
static int cmp_write_item(const void *a, const void *b) {
    const write_item *x = a, *y = b;
    size_t sx = gkd_st_dtype_size(x->t->dtype), sy = gkd_st_dtype_size(y->t->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->t->name, y->t->name);
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static gkd_status check_write_args(const char *path, const gkd_st_tensor *tensors, int n,
                                   const char *const *meta_keys, const char *const *meta_values, int n_meta,
                                   write_item *items) {
    for (int i = 0; i < n; i++) {
        const gkd_st_tensor *t = &tensors[i];
        if (!t->name || !*t->name || strcmp(t->name, "__metadata__") == 0)
            return gkd_error_set(GKD_ERR_ARG, "%s: tensor %d has an empty or reserved name", path, i);
        if ((unsigned)t->dtype >= GKD_ST_DTYPE_COUNT || t->ndim < 0 || t->ndim > GKD_ST_MAX_DIMS ||
            (t->ndim > 0 && !t->shape))
            return gkd_error_set(GKD_ERR_ARG, "%s: tensor '%s': bad dtype or ndim", path, t->name);
        uint64_t nbytes = gkd_st_dtype_size(t->dtype);
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 || (t->shape[d] && nbytes > (uint64_t)INT64_MAX / (uint64_t)t->shape[d]))
                return gkd_error_set(GKD_ERR_ARG, "%s: tensor '%s': bad shape[%d] = %lld", path, t->name, d,
                                     (long long)t->shape[d]);
            nbytes *= (uint64_t)t->shape[d];
        }
        if (nbytes && !t->data) return gkd_error_set(GKD_ERR_ARG, "%s: tensor '%s': no data", path, t->name);
        items[i] = (write_item){t, nbytes};
    }
    qsort(items, (size_t)n, sizeof *items, cmp_write_item);
    for (int i = 1; i < n; i++)
        if (strcmp(items[i - 1].t->name, items[i].t->name) == 0)
            return gkd_error_set(GKD_ERR_ARG, "%s: tensor '%s' given twice", path, items[i].t->name);

    const char **keys = malloc((n_meta ? (size_t)n_meta : 1) * sizeof *keys);
    if (!keys) return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", path);
    gkd_status s = GKD_OK;
    for (int i = 0; i < n_meta && s == GKD_OK; i++) {
        if (!meta_keys[i] || !meta_values[i])
            s = gkd_error_set(GKD_ERR_ARG, "%s: metadata %d is NULL", path, i);
        keys[i] = meta_keys[i];
    }
    if (s == GKD_OK) {
        qsort(keys, (size_t)n_meta, sizeof *keys, cmp_cstr);
        for (int i = 1; i < n_meta && s == GKD_OK; i++)
            if (strcmp(keys[i - 1], keys[i]) == 0)
                s = gkd_error_set(GKD_ERR_ARG, "%s: metadata key '%s' given twice", path, keys[i]);
    }
    free(keys);
    return s;
}

static void build_header(gkd_buf *b, const write_item *items, int n, const char *const *meta_keys,
                         const char *const *meta_values, int n_meta) {
    gkd_buf_puts(b, "{");
    if (n_meta > 0) {
        gkd_buf_puts(b, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) gkd_buf_puts(b, ",");
            gkd_buf_json_string(b, meta_keys[i], strlen(meta_keys[i]));
            gkd_buf_puts(b, ":");
            gkd_buf_json_string(b, meta_values[i], strlen(meta_values[i]));
        }
        gkd_buf_puts(b, "}");
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const gkd_st_tensor *t = items[i].t;
        if (i || n_meta > 0) gkd_buf_puts(b, ",");
        gkd_buf_json_string(b, t->name, strlen(t->name));
        gkd_buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", gkd_st_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) gkd_buf_printf(b, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        gkd_buf_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                       (unsigned long long)(offset + items[i].nbytes));
        offset += items[i].nbytes;
    }
    gkd_buf_puts(b, "}");
    while (b->len % 8) gkd_buf_puts(b, " ");
}

static int write_all(FILE *f, const void *p, size_t n) {
    return n == 0 || fwrite(p, 1, n, f) == n;
}

/* Makes the rename itself durable; failure here is not an error for the checkpoint's content. */
static void sync_parent_dir(const char *path) {
    char *dir = strdup(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash) {
        slash[slash == dir ? 1 : 0] = '\0';
        d = dir;
    }
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

gkd_status gkd_safetensors_write(const char *path, const gkd_st_tensor *tensors, int n,
                                 const char *const *meta_keys, const char *const *meta_values, int n_meta) {
    if (n < 0 || n_meta < 0 || (n > 0 && !tensors) || (n_meta > 0 && (!meta_keys || !meta_values)))
        return gkd_error_set(GKD_ERR_ARG, "%s: bad tensor or metadata arrays", path);
    write_item *items = malloc((n ? (size_t)n : 1) * sizeof *items);
    if (!items) return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", path);
    gkd_status s = check_write_args(path, tensors, n, meta_keys, meta_values, n_meta, items);
    if (s != GKD_OK) {
        free(items);
        return s;
    }

    gkd_buf header = {0};
    build_header(&header, items, n, meta_keys, meta_values, n_meta);
    size_t tmp_cap = strlen(path) + 32;
    char *tmp = malloc(tmp_cap);
    if (header.failed || !tmp) {
        s = gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    snprintf(tmp, tmp_cap, "%s.tmp.%ld", path, (long)getpid());

    FILE *f = fopen(tmp, "wb");
    if (!f) {
        s = gkd_error_set(GKD_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++) len_bytes[i] = (unsigned char)((uint64_t)header.len >> (8 * i));
    int ok = write_all(f, len_bytes, 8) && write_all(f, header.data, header.len);
    for (int i = 0; ok && i < n; i++) ok = write_all(f, items[i].t->data, (size_t)items[i].nbytes);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int err = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = 0;
        err = errno;
    }
    if (!ok) {
        remove(tmp);
        s = gkd_error_set(GKD_ERR_IO, "%s: write failed: %s", path, strerror(err));
        goto done;
    }
    sync_parent_dir(path);

done:
    free(tmp);
    gkd_buf_free(&header);
    free(items);
    return s;
}
