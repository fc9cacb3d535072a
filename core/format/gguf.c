/* GGUF reader. open streams through the key/values and tensor infos once, copying them into the handle
 * and checking every length and count against the bytes left in the file before allocating, so a corrupt
 * or hostile file cannot make it allocate more than a small multiple of the file size; tensor data is
 * read with pread and dequantised in bounded chunks.
 * Rules: dequantisation follows ggml's block definitions; every product of a quant (at most 8 bits) and an
 * f16 scale (11 significant bits) is exact in float, so each value has at most one rounding (Q4_1's
 * "+ m") and equals ggml's and numpy's to the bit whether or not a compiler fuses the multiply-add. */
#include "core/format/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/format/safetensors.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gkd's GGUF reader assumes a little-endian host"
#endif

enum { GGUF_MAX_NESTING = 8 };

typedef struct {
    char *key;
    gkd_gguf_type type;
    int64_t i;               /* signed integer scalars */
    uint64_t u;              /* unsigned integer and bool scalars */
    double f;                /* FLOAT32 / FLOAT64 scalars */
    char *str;               /* STRING */
    uint64_t len;            /* STRING: byte length */
    gkd_gguf_type elem_type; /* ARRAY */
    uint64_t n;              /* ARRAY: element count */
    unsigned char *data;     /* ARRAY of numbers or bools: the elements as stored (n x element size) */
    char **strs;             /* ARRAY of STRING: (n) */
    uint64_t *lens;          /* ARRAY of STRING: (n) */
} gguf_kv;

typedef struct {
    const char *name;
    int index;
} name_index;

struct gkd_gguf {
    char *path;
    int fd;
    uint32_t version;
    uint32_t alignment;
    int n_kv;
    gguf_kv *kvs;
    int n_tensors;
    gkd_gguf_tensor_info *tensors;
    name_index *by_name;
};

/* ---- ggml tensor types: block size in elements and bytes, from ggml's type traits ---- */

typedef struct {
    int id;
    const char *name;
    uint32_t block;
    uint32_t bytes;
} ggml_type_desc;

static const ggml_type_desc ggml_types[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},     {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},     {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},  {14, "Q6_K", 256, 210},
    {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74}, {18, "IQ3_XXS", 256, 98},
    {19, "IQ1_S", 256, 50},   {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110}, {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},       {26, "I32", 1, 4},
    {27, "I64", 1, 8},        {28, "F64", 1, 8},        {29, "IQ1_M", 256, 56},  {30, "BF16", 1, 2},
    {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};

static const ggml_type_desc *type_desc(int id) {
    for (size_t i = 0; i < sizeof ggml_types / sizeof *ggml_types; i++)
        if (ggml_types[i].id == id) return &ggml_types[i];
    return NULL;
}

const char *gkd_ggml_type_name(int type) {
    const ggml_type_desc *d = type_desc(type);
    return d ? d->name : "?";
}

static const char *value_type_name(gkd_gguf_type t) {
    static const char *const names[] = {"UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",  "FLOAT32",
                                        "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64"};
    return (unsigned)t < sizeof names / sizeof *names ? names[t] : "?";
}

/* Bytes of one scalar of a fixed-size type; 0 for STRING, ARRAY and unknown types. */
static size_t scalar_size(gkd_gguf_type t) {
    switch (t) {
    case GKD_GGUF_UINT8:
    case GKD_GGUF_INT8:
    case GKD_GGUF_BOOL:
        return 1;
    case GKD_GGUF_UINT16:
    case GKD_GGUF_INT16:
        return 2;
    case GKD_GGUF_UINT32:
    case GKD_GGUF_INT32:
    case GKD_GGUF_FLOAT32:
        return 4;
    case GKD_GGUF_UINT64:
    case GKD_GGUF_INT64:
    case GKD_GGUF_FLOAT64:
        return 8;
    case GKD_GGUF_STRING:
    case GKD_GGUF_ARRAY:
        break;
    }
    return 0;
}

/* ---- buffered sequential reading of the header ---- */

typedef struct {
    int fd;
    const char *path;
    uint64_t size; /* file size */
    uint64_t pos;  /* file offset of the next byte to consume */
    uint64_t buf_start;
    size_t buf_len;
    char what[320]; /* what is being read, for error messages: "key 'x'", "tensor 'y'" */
    unsigned char buf[1 << 16];
} stream;

static uint64_t remaining(const stream *s) {
    return s->size - s->pos;
}

static gkd_status truncated(const stream *s, uint64_t need) {
    return gkd_error_set(
        GKD_ERR_FORMAT, "%s: truncated: %s needs %llu bytes at offset %llu, only %llu remain", s->path,
        s->what, (unsigned long long)need, (unsigned long long)s->pos, (unsigned long long)remaining(s));
}

static gkd_status stream_read(stream *s, void *dst, uint64_t n) {
    if (n > remaining(s)) return truncated(s, n);
    unsigned char *out = dst;
    while (n > 0) {
        if (s->pos < s->buf_start || s->pos >= s->buf_start + s->buf_len) {
            ssize_t got;
            do got = pread(s->fd, s->buf, sizeof s->buf, (off_t)s->pos);
            while (got < 0 && errno == EINTR);
            if (got < 0)
                return gkd_error_set(GKD_ERR_IO, "%s: read at offset %llu: %s", s->path,
                                     (unsigned long long)s->pos, strerror(errno));
            if (got == 0) return truncated(s, n);
            s->buf_start = s->pos;
            s->buf_len = (size_t)got;
        }
        size_t off = (size_t)(s->pos - s->buf_start);
        size_t k = s->buf_len - off < n ? s->buf_len - off : (size_t)n;
        memcpy(out, s->buf + off, k);
        out += k;
        s->pos += k;
        n -= k;
    }
    return GKD_OK;
}

static gkd_status read_u32(stream *s, uint32_t *v) {
    return stream_read(s, v, 4);
}

static gkd_status read_u64(stream *s, uint64_t *v) {
    return stream_read(s, v, 8);
}

/* A GGUF string: u64 length, bytes. *out is NUL-terminated and owned by the caller. */
static gkd_status read_string(stream *s, char **out, uint64_t *len_out) {
    uint64_t len;
    gkd_status st = read_u64(s, &len);
    if (st != GKD_OK) return st;
    if (len > remaining(s)) return truncated(s, len);
    char *str = malloc(len + 1);
    if (!str)
        return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory for a %llu-byte string", s->path,
                             (unsigned long long)len);
    if ((st = stream_read(s, str, len)) != GKD_OK) {
        free(str);
        return st;
    }
    str[len] = '\0';
    *out = str;
    if (len_out) *len_out = len;
    return GKD_OK;
}

/* Consumes an array without keeping it (arrays of arrays, which nothing gkd reads uses). */
static gkd_status skip_array(stream *s, int depth) {
    uint32_t t;
    uint64_t n;
    gkd_status st;
    if (depth > GGUF_MAX_NESTING)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: %s: arrays nested deeper than %d", s->path, s->what,
                             GGUF_MAX_NESTING);
    if ((st = read_u32(s, &t)) != GKD_OK || (st = read_u64(s, &n)) != GKD_OK) return st;
    size_t size = scalar_size((gkd_gguf_type)t);
    if (size) {
        if (n > remaining(s) / size) return truncated(s, n * size);
        s->pos += n * size;
        return GKD_OK;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (t == GKD_GGUF_STRING) {
            uint64_t len;
            if ((st = read_u64(s, &len)) != GKD_OK) return st;
            if (len > remaining(s)) return truncated(s, len);
            s->pos += len;
        } else if (t == GKD_GGUF_ARRAY) {
            if ((st = skip_array(s, depth + 1)) != GKD_OK) return st;
        } else {
            return gkd_error_set(GKD_ERR_FORMAT, "%s: %s: unknown array element type %u at offset %llu",
                                 s->path, s->what, t, (unsigned long long)(s->pos));
        }
    }
    return GKD_OK;
}

static gkd_status read_array(stream *s, gguf_kv *kv) {
    uint32_t t;
    gkd_status st;
    uint64_t start = s->pos;
    if ((st = read_u32(s, &t)) != GKD_OK || (st = read_u64(s, &kv->n)) != GKD_OK) return st;
    kv->elem_type = (gkd_gguf_type)t;
    size_t size = scalar_size(kv->elem_type);
    if (size) {
        if (kv->n > remaining(s) / size) return truncated(s, kv->n * size);
        if (!(kv->data = malloc(kv->n * size + 1)))
            return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory for %s", s->path, s->what);
        return stream_read(s, kv->data, kv->n * size);
    }
    if (t == GKD_GGUF_STRING) {
        /* each string takes at least its 8-byte length */
        if (kv->n > remaining(s) / 8) return truncated(s, kv->n * 8);
        kv->strs = calloc(kv->n + 1, sizeof *kv->strs);
        kv->lens = calloc(kv->n + 1, sizeof *kv->lens);
        if (!kv->strs || !kv->lens)
            return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory for %s", s->path, s->what);
        for (uint64_t i = 0; i < kv->n; i++)
            if ((st = read_string(s, &kv->strs[i], &kv->lens[i])) != GKD_OK) return st;
        return GKD_OK;
    }
    if (t == GKD_GGUF_ARRAY) {
        s->pos = start;
        return skip_array(s, 0);
    }
    return gkd_error_set(GKD_ERR_FORMAT, "%s: %s: unknown array element type %u at offset %llu", s->path,
                         s->what, t, (unsigned long long)(start));
}

static gkd_status read_kv(stream *s, gguf_kv *kv) {
    uint32_t t;
    gkd_status st;
    if ((st = read_u32(s, &t)) != GKD_OK) return st;
    kv->type = (gkd_gguf_type)t;
    unsigned char raw[8] = {0};
    size_t size = scalar_size(kv->type);
    if (size) {
        if ((st = stream_read(s, raw, size)) != GKD_OK) return st;
        uint8_t u8;
        uint16_t u16;
        uint32_t u32;
        float f32;
        memcpy(&u8, raw, 1);
        memcpy(&u16, raw, 2);
        memcpy(&u32, raw, 4);
        memcpy(&f32, raw, 4);
        switch (kv->type) {
        case GKD_GGUF_UINT8:
        case GKD_GGUF_BOOL:
            kv->u = u8;
            break;
        case GKD_GGUF_INT8:
            kv->i = (int8_t)u8;
            break;
        case GKD_GGUF_UINT16:
            kv->u = u16;
            break;
        case GKD_GGUF_INT16:
            kv->i = (int16_t)u16;
            break;
        case GKD_GGUF_UINT32:
            kv->u = u32;
            break;
        case GKD_GGUF_INT32:
            kv->i = (int32_t)u32;
            break;
        case GKD_GGUF_FLOAT32:
            kv->f = f32;
            break;
        case GKD_GGUF_UINT64:
            memcpy(&kv->u, raw, 8);
            break;
        case GKD_GGUF_INT64:
            memcpy(&kv->i, raw, 8);
            break;
        case GKD_GGUF_FLOAT64:
            memcpy(&kv->f, raw, 8);
            break;
        case GKD_GGUF_STRING:
        case GKD_GGUF_ARRAY:
            break;
        }
        return GKD_OK;
    }
    if (kv->type == GKD_GGUF_STRING) return read_string(s, &kv->str, &kv->len);
    if (kv->type == GKD_GGUF_ARRAY) return read_array(s, kv);
    return gkd_error_set(GKD_ERR_FORMAT, "%s: %s: unknown value type %u at offset %llu", s->path, s->what, t,
                         (unsigned long long)(s->pos - 4));
}

static void free_kv(gguf_kv *kv) {
    free(kv->key);
    free(kv->str);
    free(kv->data);
    if (kv->strs)
        for (uint64_t i = 0; i < kv->n; i++) free(kv->strs[i]);
    free(kv->strs);
    free(kv->lens);
}

void gkd_gguf_close(gkd_gguf *g) {
    if (!g) return;
    if (g->fd >= 0) close(g->fd);
    for (int i = 0; i < g->n_kv; i++) free_kv(&g->kvs[i]);
    for (int i = 0; i < g->n_tensors; i++) free((char *)g->tensors[i].name);
    free(g->kvs);
    free(g->tensors);
    free(g->by_name);
    free(g->path);
    free(g);
}

static const gguf_kv *find_kv(const gkd_gguf *g, const char *key) {
    for (int i = 0; i < g->n_kv; i++)
        if (strcmp(g->kvs[i].key, key) == 0) return &g->kvs[i];
    return NULL;
}

static gkd_status read_kvs(gkd_gguf *g, stream *s, uint64_t n_kv) {
    /* smallest key/value: 8-byte key length, 4-byte type, 1-byte value */
    if (n_kv > remaining(s) / 13 || n_kv > INT32_MAX)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: header claims %llu key/values, more than the file can hold",
                             g->path, (unsigned long long)n_kv);
    g->kvs = calloc(n_kv ? n_kv : 1, sizeof *g->kvs);
    if (!g->kvs) return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &g->kvs[i];
        g->n_kv = (int)i + 1;
        snprintf(s->what, sizeof s->what, "key/value %llu", (unsigned long long)i);
        gkd_status st = read_string(s, &kv->key, NULL);
        if (st != GKD_OK) return st;
        snprintf(s->what, sizeof s->what, "key '%.256s'", kv->key);
        if ((st = read_kv(s, kv)) != GKD_OK) return st;
        for (uint64_t j = 0; j < i; j++)
            if (strcmp(g->kvs[j].key, kv->key) == 0)
                return gkd_error_set(GKD_ERR_FORMAT, "%s: key '%s' appears twice", g->path, kv->key);
    }
    return GKD_OK;
}

static gkd_status read_tensor_info(gkd_gguf *g, stream *s, gkd_gguf_tensor_info *t) {
    char *name = NULL;
    gkd_status st = read_string(s, &name, NULL);
    if (st != GKD_OK) return st;
    t->name = name;
    snprintf(s->what, sizeof s->what, "tensor '%.256s'", name);
    uint32_t n_dims, type;
    if ((st = read_u32(s, &n_dims)) != GKD_OK) return st;
    if (n_dims > GKD_GGUF_MAX_DIMS)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: tensor '%s': %u dims, more than %d", g->path, name, n_dims,
                             GKD_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    t->n_elements = 1;
    for (int d = 0; d < GKD_GGUF_MAX_DIMS; d++) t->dims[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if ((st = read_u64(s, &t->dims[d])) != GKD_OK) return st;
        /* 2^62 elements is far past any file; the bound keeps the byte count below from overflowing */
        if (t->dims[d] && t->n_elements > (UINT64_C(1) << 62) / t->dims[d])
            return gkd_error_set(GKD_ERR_FORMAT, "%s: tensor '%s': absurd dims", g->path, name);
        t->n_elements *= t->dims[d];
    }
    if ((st = read_u32(s, &type)) != GKD_OK || (st = read_u64(s, &t->offset)) != GKD_OK) return st;
    t->type = (int)type;
    const ggml_type_desc *desc = type_desc(t->type);
    if (!desc)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: tensor '%s': unknown ggml type %u", g->path, name, type);
    if (t->dims[0] % desc->block)
        return gkd_error_set(GKD_ERR_FORMAT,
                             "%s: tensor '%s': first dim %llu is not a multiple of %s's block of %u", g->path,
                             name, (unsigned long long)t->dims[0], desc->name, desc->block);
    /* compared before multiplying: 2^62 F32 elements would wrap to 0 bytes and pass the bounds check */
    if (t->n_elements / desc->block > s->size / desc->bytes)
        return gkd_error_set(
            GKD_ERR_FORMAT, "%s: tensor '%s': %llu elements of %s need more bytes than the file's %llu",
            g->path, name, (unsigned long long)t->n_elements, desc->name, (unsigned long long)s->size);
    t->nbytes = t->n_elements / desc->block * desc->bytes;
    if (t->offset % g->alignment)
        return gkd_error_set(GKD_ERR_FORMAT,
                             "%s: tensor '%s': offset %llu is not a multiple of the alignment %u", g->path,
                             name, (unsigned long long)t->offset, g->alignment);
    return GKD_OK;
}

static int cmp_name_index(const void *a, const void *b) {
    return strcmp(((const name_index *)a)->name, ((const name_index *)b)->name);
}

static gkd_status read_tensor_infos(gkd_gguf *g, stream *s, uint64_t n_tensors) {
    /* smallest tensor info: name length, n_dims, type, offset */
    if (n_tensors > remaining(s) / 24 || n_tensors > INT32_MAX)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: header claims %llu tensors, more than the file can hold",
                             g->path, (unsigned long long)n_tensors);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    g->by_name = calloc(n_tensors ? n_tensors : 1, sizeof *g->by_name);
    if (!g->tensors || !g->by_name) return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", g->path);
    for (uint64_t i = 0; i < n_tensors; i++) {
        snprintf(s->what, sizeof s->what, "tensor info %llu", (unsigned long long)i);
        gkd_status st = read_tensor_info(g, s, &g->tensors[i]);
        if (g->tensors[i].name) g->n_tensors = (int)i + 1;
        if (st != GKD_OK) return st;
    }

    uint64_t data_start = s->pos + (g->alignment - s->pos % g->alignment) % g->alignment;
    for (int i = 0; i < g->n_tensors; i++) {
        gkd_gguf_tensor_info *t = &g->tensors[i];
        uint64_t limit = s->size > data_start ? s->size - data_start : 0;
        if (t->offset > limit || t->nbytes > limit - t->offset)
            return gkd_error_set(
                GKD_ERR_FORMAT,
                "%s: tensor '%s': data at file offset %llu + %llu bytes runs past the end of the file "
                "(%llu bytes): truncated or corrupt",
                g->path, t->name, (unsigned long long)(data_start + t->offset), (unsigned long long)t->nbytes,
                (unsigned long long)s->size);
        t->offset += data_start;
        g->by_name[i] = (name_index){t->name, i};
    }
    qsort(g->by_name, (size_t)g->n_tensors, sizeof *g->by_name, cmp_name_index);
    for (int i = 1; i < g->n_tensors; i++)
        if (strcmp(g->by_name[i - 1].name, g->by_name[i].name) == 0)
            return gkd_error_set(GKD_ERR_FORMAT, "%s: tensor '%s' appears twice", g->path,
                                 g->by_name[i].name);
    return GKD_OK;
}

static gkd_status read_alignment(gkd_gguf *g) {
    g->alignment = GKD_GGUF_DEFAULT_ALIGNMENT;
    if (!find_kv(g, "general.alignment")) return GKD_OK;
    uint32_t a;
    gkd_status st = gkd_gguf_get_u32(g, "general.alignment", &a);
    if (st != GKD_OK) return st;
    if (a == 0 || (a & (a - 1)))
        return gkd_error_set(GKD_ERR_FORMAT, "%s: general.alignment %u is not a power of two", g->path, a);
    g->alignment = a;
    return GKD_OK;
}

gkd_status gkd_gguf_open(const char *path, gkd_gguf **out) {
    *out = NULL;
    gkd_gguf *g = calloc(1, sizeof *g);
    stream *s = malloc(sizeof *s);
    if (!g || !s || !(g->path = strdup(path))) {
        free(g);
        free(s);
        return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", path);
    }
    gkd_status st = GKD_OK;
    g->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (g->fd < 0 || fstat(g->fd, &sb) != 0) {
        st = gkd_error_set(GKD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    s->fd = g->fd;
    s->path = g->path;
    s->size = (uint64_t)sb.st_size;
    s->pos = s->buf_start = 0;
    s->buf_len = 0;
    snprintf(s->what, sizeof s->what, "the header");

    char magic[4];
    uint64_t n_tensors, n_kv;
    if ((st = stream_read(s, magic, 4)) != GKD_OK) goto done;
    if (memcmp(magic, "GGUF", 4) != 0) {
        st =
            gkd_error_set(GKD_ERR_FORMAT, "%s: bad magic %02x %02x %02x %02x at offset 0 (expected \"GGUF\")",
                          path, (unsigned char)magic[0], (unsigned char)magic[1], (unsigned char)magic[2],
                          (unsigned char)magic[3]);
        goto done;
    }
    if ((st = read_u32(s, &g->version)) != GKD_OK) goto done;
    if (g->version != 2 && g->version != 3) {
        uint32_t v = g->version;
        int swapped = (v >> 24) == 2 || (v >> 24) == 3;
        st = gkd_error_set(GKD_ERR_FORMAT, "%s: GGUF version %u at offset 4%s; gkd reads versions 2 and 3",
                           path, swapped ? v >> 24 : v, swapped ? " in a big-endian file" : "");
        goto done;
    }
    if ((st = read_u64(s, &n_tensors)) != GKD_OK || (st = read_u64(s, &n_kv)) != GKD_OK) goto done;
    if ((st = read_kvs(g, s, n_kv)) != GKD_OK) goto done;
    if ((st = read_alignment(g)) != GKD_OK) goto done;
    st = read_tensor_infos(g, s, n_tensors);

done:
    free(s);
    if (st != GKD_OK) {
        gkd_gguf_close(g);
        return st;
    }
    *out = g;
    return GKD_OK;
}

const char *gkd_gguf_path(const gkd_gguf *g) {
    return g->path;
}

uint32_t gkd_gguf_version(const gkd_gguf *g) {
    return g->version;
}

uint32_t gkd_gguf_alignment(const gkd_gguf *g) {
    return g->alignment;
}

int gkd_gguf_kv_count(const gkd_gguf *g) {
    return g->n_kv;
}

const char *gkd_gguf_kv_key(const gkd_gguf *g, int i, gkd_gguf_type *type) {
    if (i < 0 || i >= g->n_kv) return NULL;
    if (type) *type = g->kvs[i].type;
    return g->kvs[i].key;
}

/* ---- typed getters ---- */

static gkd_status lookup(const gkd_gguf *g, const char *key, const gguf_kv **out) {
    *out = find_kv(g, key);
    if (!*out) return gkd_error_set(GKD_ERR_NOT_FOUND, "%s: no key '%s'", g->path, key);
    return GKD_OK;
}

static gkd_status wrong_type(const gkd_gguf *g, const gguf_kv *kv, const char *wanted) {
    return gkd_error_set(GKD_ERR_FORMAT, "%s: key '%s' is %s, expected %s", g->path, kv->key,
                         value_type_name(kv->type), wanted);
}

static int is_signed_int(gkd_gguf_type t) {
    return t == GKD_GGUF_INT8 || t == GKD_GGUF_INT16 || t == GKD_GGUF_INT32 || t == GKD_GGUF_INT64;
}

static int is_unsigned_int(gkd_gguf_type t) {
    return t == GKD_GGUF_UINT8 || t == GKD_GGUF_UINT16 || t == GKD_GGUF_UINT32 || t == GKD_GGUF_UINT64;
}

gkd_status gkd_gguf_get_u32(const gkd_gguf *g, const char *key, uint32_t *out) {
    const gguf_kv *kv;
    gkd_status st = lookup(g, key, &kv);
    if (st != GKD_OK) return st;
    if (is_unsigned_int(kv->type) && kv->u <= UINT32_MAX) {
        *out = (uint32_t)kv->u;
        return GKD_OK;
    }
    if (is_signed_int(kv->type) && kv->i >= 0 && kv->i <= (int64_t)UINT32_MAX) {
        *out = (uint32_t)kv->i;
        return GKD_OK;
    }
    return wrong_type(g, kv, "an integer in [0, 2^32)");
}

gkd_status gkd_gguf_get_i64(const gkd_gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv;
    gkd_status st = lookup(g, key, &kv);
    if (st != GKD_OK) return st;
    if (is_signed_int(kv->type)) {
        *out = kv->i;
        return GKD_OK;
    }
    if (is_unsigned_int(kv->type) && kv->u <= (uint64_t)INT64_MAX) {
        *out = (int64_t)kv->u;
        return GKD_OK;
    }
    return wrong_type(g, kv, "an integer in [-2^63, 2^63)");
}

gkd_status gkd_gguf_get_f32(const gkd_gguf *g, const char *key, float *out) {
    const gguf_kv *kv;
    gkd_status st = lookup(g, key, &kv);
    if (st != GKD_OK) return st;
    if (kv->type != GKD_GGUF_FLOAT32 && kv->type != GKD_GGUF_FLOAT64) return wrong_type(g, kv, "FLOAT32");
    *out = (float)kv->f;
    return GKD_OK;
}

gkd_status gkd_gguf_get_bool(const gkd_gguf *g, const char *key, int *out) {
    const gguf_kv *kv;
    gkd_status st = lookup(g, key, &kv);
    if (st != GKD_OK) return st;
    if (kv->type != GKD_GGUF_BOOL) return wrong_type(g, kv, "BOOL");
    *out = kv->u != 0;
    return GKD_OK;
}

gkd_status gkd_gguf_get_string(const gkd_gguf *g, const char *key, const char **out) {
    const gguf_kv *kv;
    gkd_status st = lookup(g, key, &kv);
    if (st != GKD_OK) return st;
    if (kv->type != GKD_GGUF_STRING) return wrong_type(g, kv, "STRING");
    *out = kv->str;
    return GKD_OK;
}

gkd_status gkd_gguf_get_array_len(const gkd_gguf *g, const char *key, uint64_t *n, gkd_gguf_type *elem_type) {
    const gguf_kv *kv;
    gkd_status st = lookup(g, key, &kv);
    if (st != GKD_OK) return st;
    if (kv->type != GKD_GGUF_ARRAY) return wrong_type(g, kv, "ARRAY");
    *n = kv->n;
    if (elem_type) *elem_type = kv->elem_type;
    return GKD_OK;
}

gkd_status gkd_gguf_get_string_array(const gkd_gguf *g, const char *key, const char *const **items,
                                     const uint64_t **lens, uint64_t *n) {
    const gguf_kv *kv;
    gkd_status st = lookup(g, key, &kv);
    if (st != GKD_OK) return st;
    if (kv->type != GKD_GGUF_ARRAY || kv->elem_type != GKD_GGUF_STRING)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: key '%s' is not an array of strings", g->path, key);
    *items = (const char *const *)kv->strs;
    if (lens) *lens = kv->lens;
    *n = kv->n;
    return GKD_OK;
}

/* Element i of a numeric array as double (exact for every integer up to 2^53 and for both floats). */
static double array_number(const gguf_kv *kv, uint64_t i, int *exact_int, int64_t *as_int) {
    const unsigned char *p = kv->data + i * scalar_size(kv->elem_type);
    int8_t i8;
    int16_t i16;
    int32_t i32;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    float f32;
    double f64;
    *exact_int = 1;
    switch (kv->elem_type) {
    case GKD_GGUF_UINT8:
        *as_int = p[0];
        break;
    case GKD_GGUF_INT8:
        memcpy(&i8, p, 1);
        *as_int = i8;
        break;
    case GKD_GGUF_UINT16:
        memcpy(&u16, p, 2);
        *as_int = u16;
        break;
    case GKD_GGUF_INT16:
        memcpy(&i16, p, 2);
        *as_int = i16;
        break;
    case GKD_GGUF_UINT32:
        memcpy(&u32, p, 4);
        *as_int = u32;
        break;
    case GKD_GGUF_INT32:
        memcpy(&i32, p, 4);
        *as_int = i32;
        break;
    case GKD_GGUF_INT64:
        memcpy(as_int, p, 8);
        break;
    case GKD_GGUF_UINT64:
        memcpy(&u64, p, 8);
        if (u64 > (uint64_t)INT64_MAX) {
            *exact_int = 0;
            return (double)u64;
        }
        *as_int = (int64_t)u64;
        break;
    case GKD_GGUF_FLOAT32:
        memcpy(&f32, p, 4);
        *exact_int = 0;
        return f32;
    case GKD_GGUF_FLOAT64:
        memcpy(&f64, p, 8);
        *exact_int = 0;
        return f64;
    default:
        *exact_int = 0;
        return 0; /* numeric_array admits no other element type */
    }
    return (double)*as_int;
}

static gkd_status numeric_array(const gkd_gguf *g, const char *key, uint64_t n, const gguf_kv **out) {
    const gguf_kv *kv;
    gkd_status st = lookup(g, key, &kv);
    if (st != GKD_OK) return st;
    if (kv->type != GKD_GGUF_ARRAY || !kv->data || kv->elem_type == GKD_GGUF_BOOL)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: key '%s' is not a numeric array", g->path, key);
    if (kv->n != n)
        return gkd_error_set(GKD_ERR_SHAPE, "%s: key '%s' has %llu elements, expected %llu", g->path, key,
                             (unsigned long long)kv->n, (unsigned long long)n);
    *out = kv;
    return GKD_OK;
}

gkd_status gkd_gguf_get_array_f32(const gkd_gguf *g, const char *key, float *dst, uint64_t n) {
    const gguf_kv *kv;
    gkd_status st = numeric_array(g, key, n, &kv);
    if (st != GKD_OK) return st;
    int exact;
    int64_t v;
    for (uint64_t i = 0; i < n; i++) dst[i] = (float)array_number(kv, i, &exact, &v);
    return GKD_OK;
}

gkd_status gkd_gguf_get_array_i32(const gkd_gguf *g, const char *key, int32_t *dst, uint64_t n) {
    const gguf_kv *kv;
    gkd_status st = numeric_array(g, key, n, &kv);
    if (st != GKD_OK) return st;
    for (uint64_t i = 0; i < n; i++) {
        int exact;
        int64_t v = 0;
        array_number(kv, i, &exact, &v);
        if (!exact || v < INT32_MIN || v > INT32_MAX)
            return gkd_error_set(GKD_ERR_FORMAT, "%s: key '%s': element %llu is not a 32-bit integer",
                                 g->path, key, (unsigned long long)i);
        dst[i] = (int32_t)v;
    }
    return GKD_OK;
}

/* ---- tensors ---- */

int gkd_gguf_tensor_count(const gkd_gguf *g) {
    return g->n_tensors;
}

const gkd_gguf_tensor_info *gkd_gguf_tensor_at(const gkd_gguf *g, int i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gkd_gguf_tensor_info *gkd_gguf_find_tensor(const gkd_gguf *g, const char *name) {
    name_index key = {name, 0};
    const name_index *hit =
        bsearch(&key, g->by_name, (size_t)g->n_tensors, sizeof *g->by_name, cmp_name_index);
    return hit ? &g->tensors[hit->index] : NULL;
}

static gkd_status pread_exact(const gkd_gguf *g, const char *name, void *dst, size_t n, uint64_t offset) {
    unsigned char *p = dst;
    while (n > 0) {
        ssize_t got = pread(g->fd, p, n, (off_t)offset);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0)
            return gkd_error_set(GKD_ERR_IO, "%s: tensor '%s': read at offset %llu: %s", g->path, name,
                                 (unsigned long long)offset, strerror(errno));
        if (got == 0)
            return gkd_error_set(GKD_ERR_FORMAT, "%s: tensor '%s': truncated at offset %llu", g->path, name,
                                 (unsigned long long)offset);
        p += got;
        n -= (size_t)got;
        offset += (uint64_t)got;
    }
    return GKD_OK;
}

static float half_at(const unsigned char *p) {
    return gkd_st_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

/* Q8_0 block (34 bytes): f16 scale d, 32 x int8 q; x = q * d. */
static void dequant_q8_0(const unsigned char *src, float *dst, size_t n_blocks) {
    for (size_t b = 0; b < n_blocks; b++, src += 34, dst += 32) {
        float d = half_at(src);
        for (int j = 0; j < 32; j++) dst[j] = (float)(int8_t)src[2 + j] * d;
    }
}

/* Q4_0 block (18 bytes): f16 scale d, 16 bytes of nibbles; byte j holds element j in its low nibble and
 * element j + 16 in its high nibble; x = (q - 8) * d. */
static void dequant_q4_0(const unsigned char *src, float *dst, size_t n_blocks) {
    for (size_t b = 0; b < n_blocks; b++, src += 18, dst += 32) {
        float d = half_at(src);
        const unsigned char *qs = src + 2;
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)((qs[j] & 0x0f) - 8) * d;
            dst[j + 16] = (float)((qs[j] >> 4) - 8) * d;
        }
    }
}

/* Q4_1 block (20 bytes): f16 scale d, f16 minimum m, 16 bytes of nibbles laid out as in Q4_0;
 * x = q * d + m. */
static void dequant_q4_1(const unsigned char *src, float *dst, size_t n_blocks) {
    for (size_t b = 0; b < n_blocks; b++, src += 20, dst += 32) {
        float d = half_at(src), m = half_at(src + 2);
        const unsigned char *qs = src + 4;
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)(qs[j] & 0x0f) * d + m;
            dst[j + 16] = (float)(qs[j] >> 4) * d + m;
        }
    }
}

static void widen_f16(const unsigned char *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = half_at(src + 2 * i);
}

static void widen_bf16(const unsigned char *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = gkd_st_bf16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
}

gkd_status gkd_gguf_read_f32(const gkd_gguf *g, const char *name, float *dst, uint64_t n_elements) {
    const gkd_gguf_tensor_info *t = gkd_gguf_find_tensor(g, name);
    if (!t) return gkd_error_set(GKD_ERR_NOT_FOUND, "%s: no tensor '%s'", g->path, name);
    if (t->n_elements != n_elements)
        return gkd_error_set(GKD_ERR_SHAPE, "%s: tensor '%s': expected %llu elements, found %llu", g->path,
                             name, (unsigned long long)n_elements, (unsigned long long)t->n_elements);
    if (t->type == GKD_GGML_F32) return pread_exact(g, name, dst, (size_t)t->nbytes, t->offset);

    /* block kinds: a "block" of F16/BF16 is one element */
    void (*blocks)(const unsigned char *, float *, size_t);
    switch (t->type) {
    case GKD_GGML_F16:
        blocks = widen_f16;
        break;
    case GKD_GGML_BF16:
        blocks = widen_bf16;
        break;
    case GKD_GGML_Q8_0:
        blocks = dequant_q8_0;
        break;
    case GKD_GGML_Q4_0:
        blocks = dequant_q4_0;
        break;
    case GKD_GGML_Q4_1:
        blocks = dequant_q4_1;
        break;
    default:
        return gkd_error_set(
            GKD_ERR_FORMAT,
            "%s: tensor '%s' has type %s, which gkd does not dequantise (F32, F16, BF16, Q8_0, "
            "Q4_0, Q4_1)",
            g->path, name, gkd_ggml_type_name(t->type));
    }
    const ggml_type_desc *desc = type_desc(t->type);
    const uint64_t chunk_blocks = (1u << 18) / desc->bytes; /* ~256 KiB of file per read */
    unsigned char *buf = malloc((size_t)chunk_blocks * desc->bytes);
    if (!buf) return gkd_error_set(GKD_ERR_NOMEM, "%s: out of memory", g->path);
    uint64_t n_blocks = t->n_elements / desc->block;
    gkd_status st = GKD_OK;
    for (uint64_t done = 0; done < n_blocks && st == GKD_OK;) {
        uint64_t k = n_blocks - done < chunk_blocks ? n_blocks - done : chunk_blocks;
        st = pread_exact(g, name, buf, (size_t)(k * desc->bytes), t->offset + done * desc->bytes);
        if (st == GKD_OK) blocks(buf, dst + done * desc->block, (size_t)k);
        done += k;
    }
    free(buf);
    return st;
}

gkd_status gkd_gguf_unpermute_qk(float *w, int rows, int cols, int n_heads) {
    if (!w || rows <= 0 || cols <= 0 || n_heads <= 0 || rows % (2 * n_heads))
        return gkd_error_set(GKD_ERR_ARG, "unpermute_qk: %d rows do not split into %d heads of even size",
                             rows, n_heads);
    int head_dim = rows / n_heads, half = head_dim / 2;
    size_t head_floats = (size_t)head_dim * (size_t)cols;
    float *tmp = malloc(head_floats * sizeof *tmp);
    if (!tmp) return gkd_error_set(GKD_ERR_NOMEM, "unpermute_qk: out of memory");
    for (int h = 0; h < n_heads; h++) {
        float *head = w + (size_t)h * head_floats;
        memcpy(tmp, head, head_floats * sizeof *tmp);
        for (int i = 0; i < half; i++)
            for (int j = 0; j < 2; j++)
                memcpy(head + (size_t)(j * half + i) * (size_t)cols, tmp + (size_t)(2 * i + j) * (size_t)cols,
                       (size_t)cols * sizeof *tmp);
    }
    free(tmp);
    return GKD_OK;
}
