/* Byte-level BPE: Unicode classes, the pre-tokenizer scanners, BPE encoding, training, and the
 * tokenizer.json reader and writer.
 * Rules: pre-tokenizer regexes are not interpreted; each supported pattern has a hand-written scanner that
 * follows the regex's leftmost-alternative, greedy-with-backtracking semantics, and a file with any other
 * pattern is refused. Bytes that are not part of valid UTF-8 are classified one by one as "other"
 * (neither space, letter nor number). Scratch memory for encoding belongs to one call, never to the
 * tokenizer, which stays read-only. */
#include "core/text/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * Unicode classes. The GPT-2 regex needs \s, \p{L} and \p{N}. The tables below are the general
 * categories L* and N* beyond ASCII for the Basic Multilingual Plane and the CJK ideograph planes 2-3,
 * as Unicode 16 (and so Oniguruma inside Hugging Face tokenizers 0.23) assigns them; tests compare every
 * BMP code point with that library. Other supplementary code points (emoji, historic scripts,
 * mathematical alphanumerics) count as "other". */

enum { CP_INVALID = 0xFFFFFFFFu };

typedef enum {
    CLS_OTHER,
    CLS_LETTER,
    CLS_NUMBER,
    CLS_SPACE,
} char_class;

/* clang-format off */
static const uint32_t letter_ranges[][2] = {
    {0xAA, 0xAA}, {0xB5, 0xB5}, {0xBA, 0xBA}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x2C1}, {0x2C6, 0x2D1},
    {0x2E0, 0x2E4}, {0x2EC, 0x2EC}, {0x2EE, 0x2EE}, {0x370, 0x374}, {0x376, 0x377}, {0x37A, 0x37D},
    {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5},
    {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556}, {0x559, 0x559}, {0x560, 0x588}, {0x5D0, 0x5EA},
    {0x5EF, 0x5F2}, {0x620, 0x64A}, {0x66E, 0x66F}, {0x671, 0x6D3}, {0x6D5, 0x6D5}, {0x6E5, 0x6E6},
    {0x6EE, 0x6EF}, {0x6FA, 0x6FC}, {0x6FF, 0x6FF}, {0x710, 0x710}, {0x712, 0x72F}, {0x74D, 0x7A5},
    {0x7B1, 0x7B1}, {0x7CA, 0x7EA}, {0x7F4, 0x7F5}, {0x7FA, 0x7FA}, {0x800, 0x815}, {0x81A, 0x81A},
    {0x824, 0x824}, {0x828, 0x828}, {0x840, 0x858}, {0x860, 0x86A}, {0x870, 0x887}, {0x889, 0x88E},
    {0x8A0, 0x8C9}, {0x904, 0x939}, {0x93D, 0x93D}, {0x950, 0x950}, {0x958, 0x961}, {0x971, 0x980},
    {0x985, 0x98C}, {0x98F, 0x990}, {0x993, 0x9A8}, {0x9AA, 0x9B0}, {0x9B2, 0x9B2}, {0x9B6, 0x9B9},
    {0x9BD, 0x9BD}, {0x9CE, 0x9CE}, {0x9DC, 0x9DD}, {0x9DF, 0x9E1}, {0x9F0, 0x9F1}, {0x9FC, 0x9FC},
    {0xA05, 0xA0A}, {0xA0F, 0xA10}, {0xA13, 0xA28}, {0xA2A, 0xA30}, {0xA32, 0xA33}, {0xA35, 0xA36},
    {0xA38, 0xA39}, {0xA59, 0xA5C}, {0xA5E, 0xA5E}, {0xA72, 0xA74}, {0xA85, 0xA8D}, {0xA8F, 0xA91},
    {0xA93, 0xAA8}, {0xAAA, 0xAB0}, {0xAB2, 0xAB3}, {0xAB5, 0xAB9}, {0xABD, 0xABD}, {0xAD0, 0xAD0},
    {0xAE0, 0xAE1}, {0xAF9, 0xAF9}, {0xB05, 0xB0C}, {0xB0F, 0xB10}, {0xB13, 0xB28}, {0xB2A, 0xB30},
    {0xB32, 0xB33}, {0xB35, 0xB39}, {0xB3D, 0xB3D}, {0xB5C, 0xB5D}, {0xB5F, 0xB61}, {0xB71, 0xB71},
    {0xB83, 0xB83}, {0xB85, 0xB8A}, {0xB8E, 0xB90}, {0xB92, 0xB95}, {0xB99, 0xB9A}, {0xB9C, 0xB9C},
    {0xB9E, 0xB9F}, {0xBA3, 0xBA4}, {0xBA8, 0xBAA}, {0xBAE, 0xBB9}, {0xBD0, 0xBD0}, {0xC05, 0xC0C},
    {0xC0E, 0xC10}, {0xC12, 0xC28}, {0xC2A, 0xC39}, {0xC3D, 0xC3D}, {0xC58, 0xC5A}, {0xC5D, 0xC5D},
    {0xC60, 0xC61}, {0xC80, 0xC80}, {0xC85, 0xC8C}, {0xC8E, 0xC90}, {0xC92, 0xCA8}, {0xCAA, 0xCB3},
    {0xCB5, 0xCB9}, {0xCBD, 0xCBD}, {0xCDD, 0xCDE}, {0xCE0, 0xCE1}, {0xCF1, 0xCF2}, {0xD04, 0xD0C},
    {0xD0E, 0xD10}, {0xD12, 0xD3A}, {0xD3D, 0xD3D}, {0xD4E, 0xD4E}, {0xD54, 0xD56}, {0xD5F, 0xD61},
    {0xD7A, 0xD7F}, {0xD85, 0xD96}, {0xD9A, 0xDB1}, {0xDB3, 0xDBB}, {0xDBD, 0xDBD}, {0xDC0, 0xDC6},
    {0xE01, 0xE30}, {0xE32, 0xE33}, {0xE40, 0xE46}, {0xE81, 0xE82}, {0xE84, 0xE84}, {0xE86, 0xE8A},
    {0xE8C, 0xEA3}, {0xEA5, 0xEA5}, {0xEA7, 0xEB0}, {0xEB2, 0xEB3}, {0xEBD, 0xEBD}, {0xEC0, 0xEC4},
    {0xEC6, 0xEC6}, {0xEDC, 0xEDF}, {0xF00, 0xF00}, {0xF40, 0xF47}, {0xF49, 0xF6C}, {0xF88, 0xF8C},
    {0x1000, 0x102A}, {0x103F, 0x103F}, {0x1050, 0x1055}, {0x105A, 0x105D}, {0x1061, 0x1061},
    {0x1065, 0x1066}, {0x106E, 0x1070}, {0x1075, 0x1081}, {0x108E, 0x108E}, {0x10A0, 0x10C5},
    {0x10C7, 0x10C7}, {0x10CD, 0x10CD}, {0x10D0, 0x10FA}, {0x10FC, 0x1248}, {0x124A, 0x124D},
    {0x1250, 0x1256}, {0x1258, 0x1258}, {0x125A, 0x125D}, {0x1260, 0x1288}, {0x128A, 0x128D},
    {0x1290, 0x12B0}, {0x12B2, 0x12B5}, {0x12B8, 0x12BE}, {0x12C0, 0x12C0}, {0x12C2, 0x12C5},
    {0x12C8, 0x12D6}, {0x12D8, 0x1310}, {0x1312, 0x1315}, {0x1318, 0x135A}, {0x1380, 0x138F},
    {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1401, 0x166C}, {0x166F, 0x167F}, {0x1681, 0x169A},
    {0x16A0, 0x16EA}, {0x16F1, 0x16F8}, {0x1700, 0x1711}, {0x171F, 0x1731}, {0x1740, 0x1751},
    {0x1760, 0x176C}, {0x176E, 0x1770}, {0x1780, 0x17B3}, {0x17D7, 0x17D7}, {0x17DC, 0x17DC},
    {0x1820, 0x1878}, {0x1880, 0x1884}, {0x1887, 0x18A8}, {0x18AA, 0x18AA}, {0x18B0, 0x18F5},
    {0x1900, 0x191E}, {0x1950, 0x196D}, {0x1970, 0x1974}, {0x1980, 0x19AB}, {0x19B0, 0x19C9},
    {0x1A00, 0x1A16}, {0x1A20, 0x1A54}, {0x1AA7, 0x1AA7}, {0x1B05, 0x1B33}, {0x1B45, 0x1B4C},
    {0x1B83, 0x1BA0}, {0x1BAE, 0x1BAF}, {0x1BBA, 0x1BE5}, {0x1C00, 0x1C23}, {0x1C4D, 0x1C4F},
    {0x1C5A, 0x1C7D}, {0x1C80, 0x1C8A}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF}, {0x1CE9, 0x1CEC},
    {0x1CEE, 0x1CF3}, {0x1CF5, 0x1CF6}, {0x1CFA, 0x1CFA}, {0x1D00, 0x1DBF}, {0x1E00, 0x1F15},
    {0x1F18, 0x1F1D}, {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59},
    {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB},
    {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2071, 0x2071}, {0x207F, 0x207F},
    {0x2090, 0x209C}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115},
    {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D},
    {0x212F, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184},
    {0x2C00, 0x2CE4}, {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0x2D00, 0x2D25}, {0x2D27, 0x2D27},
    {0x2D2D, 0x2D2D}, {0x2D30, 0x2D67}, {0x2D6F, 0x2D6F}, {0x2D80, 0x2D96}, {0x2DA0, 0x2DA6},
    {0x2DA8, 0x2DAE}, {0x2DB0, 0x2DB6}, {0x2DB8, 0x2DBE}, {0x2DC0, 0x2DC6}, {0x2DC8, 0x2DCE},
    {0x2DD0, 0x2DD6}, {0x2DD8, 0x2DDE}, {0x2E2F, 0x2E2F}, {0x3005, 0x3006}, {0x3031, 0x3035},
    {0x303B, 0x303C}, {0x3041, 0x3096}, {0x309D, 0x309F}, {0x30A1, 0x30FA}, {0x30FC, 0x30FF},
    {0x3105, 0x312F}, {0x3131, 0x318E}, {0x31A0, 0x31BF}, {0x31F0, 0x31FF}, {0x3400, 0x4DBF},
    {0x4E00, 0xA48C}, {0xA4D0, 0xA4FD}, {0xA500, 0xA60C}, {0xA610, 0xA61F}, {0xA62A, 0xA62B},
    {0xA640, 0xA66E}, {0xA67F, 0xA69D}, {0xA6A0, 0xA6E5}, {0xA717, 0xA71F}, {0xA722, 0xA788},
    {0xA78B, 0xA7CD}, {0xA7D0, 0xA7D1}, {0xA7D3, 0xA7D3}, {0xA7D5, 0xA7DC}, {0xA7F2, 0xA801},
    {0xA803, 0xA805}, {0xA807, 0xA80A}, {0xA80C, 0xA822}, {0xA840, 0xA873}, {0xA882, 0xA8B3},
    {0xA8F2, 0xA8F7}, {0xA8FB, 0xA8FB}, {0xA8FD, 0xA8FE}, {0xA90A, 0xA925}, {0xA930, 0xA946},
    {0xA960, 0xA97C}, {0xA984, 0xA9B2}, {0xA9CF, 0xA9CF}, {0xA9E0, 0xA9E4}, {0xA9E6, 0xA9EF},
    {0xA9FA, 0xA9FE}, {0xAA00, 0xAA28}, {0xAA40, 0xAA42}, {0xAA44, 0xAA4B}, {0xAA60, 0xAA76},
    {0xAA7A, 0xAA7A}, {0xAA7E, 0xAAAF}, {0xAAB1, 0xAAB1}, {0xAAB5, 0xAAB6}, {0xAAB9, 0xAABD},
    {0xAAC0, 0xAAC0}, {0xAAC2, 0xAAC2}, {0xAADB, 0xAADD}, {0xAAE0, 0xAAEA}, {0xAAF2, 0xAAF4},
    {0xAB01, 0xAB06}, {0xAB09, 0xAB0E}, {0xAB11, 0xAB16}, {0xAB20, 0xAB26}, {0xAB28, 0xAB2E},
    {0xAB30, 0xAB5A}, {0xAB5C, 0xAB69}, {0xAB70, 0xABE2}, {0xAC00, 0xD7A3}, {0xD7B0, 0xD7C6},
    {0xD7CB, 0xD7FB}, {0xF900, 0xFA6D}, {0xFA70, 0xFAD9}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17},
    {0xFB1D, 0xFB1D}, {0xFB1F, 0xFB28}, {0xFB2A, 0xFB36}, {0xFB38, 0xFB3C}, {0xFB3E, 0xFB3E},
    {0xFB40, 0xFB41}, {0xFB43, 0xFB44}, {0xFB46, 0xFBB1}, {0xFBD3, 0xFD3D}, {0xFD50, 0xFD8F},
    {0xFD92, 0xFDC7}, {0xFDF0, 0xFDFB}, {0xFE70, 0xFE74}, {0xFE76, 0xFEFC}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0xFF66, 0xFFBE}, {0xFFC2, 0xFFC7}, {0xFFCA, 0xFFCF}, {0xFFD2, 0xFFD7},
    {0xFFDA, 0xFFDC}, {0x20000, 0x2A6DF}, {0x2A700, 0x2B739}, {0x2B740, 0x2B81D}, {0x2B820, 0x2CEA1},
    {0x2CEB0, 0x2EBE0}, {0x2EBF0, 0x2EE5D}, {0x2F800, 0x2FA1D}, {0x30000, 0x3134A}, {0x31350, 0x323AF},
};
static const uint32_t number_ranges[][2] = {
    {0xB2, 0xB3}, {0xB9, 0xB9}, {0xBC, 0xBE}, {0x660, 0x669}, {0x6F0, 0x6F9}, {0x7C0, 0x7C9}, {0x966, 0x96F},
    {0x9E6, 0x9EF}, {0x9F4, 0x9F9}, {0xA66, 0xA6F}, {0xAE6, 0xAEF}, {0xB66, 0xB6F}, {0xB72, 0xB77},
    {0xBE6, 0xBF2}, {0xC66, 0xC6F}, {0xC78, 0xC7E}, {0xCE6, 0xCEF}, {0xD58, 0xD5E}, {0xD66, 0xD78},
    {0xDE6, 0xDEF}, {0xE50, 0xE59}, {0xED0, 0xED9}, {0xF20, 0xF33}, {0x1040, 0x1049}, {0x1090, 0x1099},
    {0x1369, 0x137C}, {0x16EE, 0x16F0}, {0x17E0, 0x17E9}, {0x17F0, 0x17F9}, {0x1810, 0x1819},
    {0x1946, 0x194F}, {0x19D0, 0x19DA}, {0x1A80, 0x1A89}, {0x1A90, 0x1A99}, {0x1B50, 0x1B59},
    {0x1BB0, 0x1BB9}, {0x1C40, 0x1C49}, {0x1C50, 0x1C59}, {0x2070, 0x2070}, {0x2074, 0x2079},
    {0x2080, 0x2089}, {0x2150, 0x2182}, {0x2185, 0x2189}, {0x2460, 0x249B}, {0x24EA, 0x24FF},
    {0x2776, 0x2793}, {0x2CFD, 0x2CFD}, {0x3007, 0x3007}, {0x3021, 0x3029}, {0x3038, 0x303A},
    {0x3192, 0x3195}, {0x3220, 0x3229}, {0x3248, 0x324F}, {0x3251, 0x325F}, {0x3280, 0x3289},
    {0x32B1, 0x32BF}, {0xA620, 0xA629}, {0xA6E6, 0xA6EF}, {0xA830, 0xA835}, {0xA8D0, 0xA8D9},
    {0xA900, 0xA909}, {0xA9D0, 0xA9D9}, {0xA9F0, 0xA9F9}, {0xAA50, 0xAA59}, {0xABF0, 0xABF9},
    {0xFF10, 0xFF19},
};
/* clang-format on */

/* Unicode's White_Space property, which is what Oniguruma's \s matches. */
static int is_space(uint32_t cp) {
    if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static int in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid][0])
            hi = mid;
        else if (cp > r[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static char_class classify(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return CLS_LETTER;
        if (cp >= '0' && cp <= '9') return CLS_NUMBER;
        return is_space(cp) ? CLS_SPACE : CLS_OTHER;
    }
    if (cp == CP_INVALID) return CLS_OTHER;
    if (is_space(cp)) return CLS_SPACE;
    if (in_ranges(letter_ranges, sizeof letter_ranges / sizeof *letter_ranges, cp)) return CLS_LETTER;
    if (in_ranges(number_ranges, sizeof number_ranges / sizeof *number_ranges, cp)) return CLS_NUMBER;
    return CLS_OTHER;
}

/* Decodes the code point at s[i] and returns its length; a byte that does not start a valid, shortest-form
 * UTF-8 sequence of a scalar value stands alone as CP_INVALID. */
static size_t utf8_next(const unsigned char *s, size_t len, size_t i, uint32_t *cp) {
    unsigned c = s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = CP_INVALID;
        return 1;
    }
    if (i + n > len) {
        *cp = CP_INVALID;
        return 1;
    }
    for (size_t k = 1; k < n; k++) {
        unsigned cc = s[i + k];
        if ((cc & 0xC0) != 0x80) {
            *cp = CP_INVALID;
            return 1;
        }
        v = (v << 6) | (cc & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = CP_INVALID;
        return 1;
    }
    *cp = v;
    return n;
}

/* ---------------------------------------------------------------------------------------------------
 * GPT-2's byte-level alphabet: every byte is shown as one printable code point, so that a vocabulary of
 * byte strings can be written as JSON text. Printable Latin-1 bytes stand for themselves; the others
 * (controls, space, DEL, NBSP, soft hyphen) are moved to U+0100 onwards in byte order. */

static int byte_is_printable(unsigned b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* The 68 other bytes are 0x00-0x20, 0x7F-0xA0 and 0xAD, numbered from U+0100 in that order. */
static uint32_t byte_to_cp(unsigned b) {
    if (byte_is_printable(b)) return b;
    if (b <= 0x20) return 0x100 + b;
    if (b >= 0x7F && b <= 0xA0) return 0x100 + 33 + (b - 0x7F);
    return 0x100 + 67; /* 0xAD */
}

/* The byte a code point of the alphabet stands for, or -1. */
static int cp_to_byte(uint32_t cp) {
    if (cp < 0x100) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp <= 0x120) return (int)(cp - 0x100);
    if (cp <= 0x142) return (int)(cp - 0x100 - 33 + 0x7F);
    return cp == 0x143 ? 0xAD : -1;
}

/* Appends the byte-level form of bytes[0..len) (each byte becomes a 1- or 2-byte UTF-8 sequence). */
static void bytes_to_str(const unsigned char *bytes, size_t len, gkd_buf *out) {
    for (size_t i = 0; i < len; i++) {
        uint32_t cp = byte_to_cp(bytes[i]);
        char u[2];
        if (cp < 0x80) {
            u[0] = (char)cp;
            gkd_buf_put(out, u, 1);
        } else {
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
            gkd_buf_put(out, u, 2);
        }
    }
}

/* Decodes a byte-level string into bytes (out needs strlen(s) bytes); returns the length, or -1 when a
 * character is outside the alphabet. */
static long str_to_bytes(const char *s, size_t len, unsigned char *out) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += utf8_next((const unsigned char *)s, len, i, &cp);
        int b = cp_to_byte(cp);
        if (b < 0) return -1;
        out[n++] = (unsigned char)b;
    }
    return (long)n;
}

/* ---------------------------------------------------------------------------------------------------
 * Hash maps (open addressing, linear probing, at most half full): token pairs -> int, and byte strings
 * -> int. A string map does not own its keys. */

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return mix64(h);
}

static uint64_t pair_key(int a, int b) {
    return (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
}

enum { PAIR_EMPTY = -1 };

typedef struct {
    uint64_t *keys;
    int *vals; /* PAIR_EMPTY marks a free slot */
    size_t cap, n;
} pair_map;

static void pair_map_free(pair_map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static int pair_map_grow(pair_map *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint64_t *keys = malloc(cap * sizeof *keys);
    int *vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return 0;
    }
    for (size_t i = 0; i < cap; i++) vals[i] = PAIR_EMPTY;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->vals[i] == PAIR_EMPTY) continue;
        size_t j = mix64(m->keys[i]) & (cap - 1);
        while (vals[j] != PAIR_EMPTY) j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys, m->vals = vals, m->cap = cap;
    return 1;
}

static int pair_map_get(const pair_map *m, uint64_t key) {
    if (!m->cap) return -1;
    for (size_t j = mix64(key) & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
        if (m->vals[j] == PAIR_EMPTY) return -1;
        if (m->keys[j] == key) return m->vals[j];
    }
}

/* Inserts or overwrites; returns 0 when out of memory. val must be >= 0. */
static int pair_map_put(pair_map *m, uint64_t key, int val) {
    if (2 * (m->n + 1) > m->cap && !pair_map_grow(m)) return 0;
    size_t j = mix64(key) & (m->cap - 1);
    while (m->vals[j] != PAIR_EMPTY && m->keys[j] != key) j = (j + 1) & (m->cap - 1);
    if (m->vals[j] == PAIR_EMPTY) m->n++;
    m->keys[j] = key;
    m->vals[j] = val;
    return 1;
}

typedef struct {
    const char *key;
    size_t len;
    int val; /* -1 marks a free slot */
} str_slot;

typedef struct {
    str_slot *slots;
    size_t cap, n;
} str_map;

static void str_map_free(str_map *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static int str_map_grow(str_map *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    str_slot *slots = malloc(cap * sizeof *slots);
    if (!slots) return 0;
    for (size_t i = 0; i < cap; i++) slots[i].val = -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].val < 0) continue;
        size_t j = hash_bytes(m->slots[i].key, m->slots[i].len) & (cap - 1);
        while (slots[j].val >= 0) j = (j + 1) & (cap - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots, m->cap = cap;
    return 1;
}

static int str_map_get(const str_map *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    for (size_t j = hash_bytes(key, len) & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
        const str_slot *s = &m->slots[j];
        if (s->val < 0) return -1;
        if (s->len == len && memcmp(s->key, key, len) == 0) return s->val;
    }
}

/* Finds key, inserting it with `val` when absent; returns its value, or -2 when out of memory. */
static int str_map_intern(str_map *m, const char *key, size_t len, int val) {
    if (2 * (m->n + 1) > m->cap && !str_map_grow(m)) return -2;
    size_t j = hash_bytes(key, len) & (m->cap - 1);
    for (;; j = (j + 1) & (m->cap - 1)) {
        str_slot *s = &m->slots[j];
        if (s->val < 0) break;
        if (s->len == len && memcmp(s->key, key, len) == 0) return s->val;
    }
    m->slots[j] = (str_slot){key, len, val};
    m->n++;
    return val;
}

/* ---------------------------------------------------------------------------------------------------
 * The tokenizer. */

/* One pre-tokenizer step of a Hugging Face pipeline; each refines the pieces of the step before. */
typedef enum {
    STEP_BYTE_LEVEL,   /* ByteLevel; with use_regex it splits with the GPT-2 pattern first */
    STEP_SPLIT_GPT2,   /* Split with the GPT-2 pattern */
    STEP_SPLIT_LLAMA3, /* Split with the Llama-3 pattern (digits in groups of up to 3) */
    STEP_SPLIT_QWEN2,  /* Split with the Llama-3 pattern but one digit per piece (Qwen2) */
    STEP_DIGITS,       /* Digits: runs of numbers, or each number alone when individual */
} step_kind;

typedef struct {
    step_kind kind;
    int flag; /* BYTE_LEVEL: use_regex; DIGITS: individual_digits */
} pre_step;

enum { MAX_PRE_STEPS = 8 };

typedef struct {
    char *bytes; /* what the token decodes to (NUL-terminated) */
    char *str;   /* its tokenizer.json string: byte-level form, or an added token's content */
    size_t len, str_len;
    unsigned in_vocab : 1;   /* listed in model.vocab */
    unsigned added : 1;      /* listed in added_tokens */
    unsigned special : 1;    /* added token with "special": true */
    unsigned normalized : 1; /* added token with "normalized": true */
} token;

typedef struct {
    int left, right, result;
} merge;

struct gkd_tokenizer {
    token *tokens;
    int n_tokens;
    int byte_id[256];
    merge *merges; /* by rank */
    int n_merges;
    pair_map merge_rank; /* (left, right) -> rank */
    str_map by_str;      /* tokenizer.json string -> id */
    int *added;          /* ids of added tokens in added_tokens order */
    int n_added;
    unsigned char added_first[256]; /* first bytes of added tokens: a cheap filter while matching */
    pre_step steps[MAX_PRE_STEPS];
    int n_steps;
    int steps_in_sequence; /* the file wrote the pre-tokenizer as a Sequence */
    int ignore_merges;     /* a piece that is a whole vocabulary token is not merged (Llama-3) */
    int role[GKD_TOKEN_ROLE_COUNT];
};

void gkd_tokenizer_free(gkd_tokenizer *tok) {
    if (!tok) return;
    for (int i = 0; i < tok->n_tokens; i++) {
        free(tok->tokens[i].bytes);
        free(tok->tokens[i].str);
    }
    free(tok->tokens);
    free(tok->merges);
    pair_map_free(&tok->merge_rank);
    str_map_free(&tok->by_str);
    free(tok->added);
    free(tok);
}

static const char *const role_names[GKD_TOKEN_ROLE_COUNT][5] = {
    [GKD_TOKEN_ROLE_EOS] = {"<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", NULL},
    [GKD_TOKEN_ROLE_BOS] = {"<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>", NULL},
    [GKD_TOKEN_ROLE_PAD] = {"<|pad|>", "<pad>", "<|finetune_right_pad_id|>", NULL, NULL},
};

static void find_roles(gkd_tokenizer *tok) {
    for (int r = 0; r < GKD_TOKEN_ROLE_COUNT; r++) {
        tok->role[r] = -1;
        for (int k = 0; role_names[r][k] && tok->role[r] < 0; k++) {
            int id = gkd_tokenizer_token_id(tok, role_names[r][k]);
            if (id >= 0 && tok->tokens[id].added) tok->role[r] = id;
        }
    }
}

/* ---------------------------------------------------------------------------------------------------
 * Encoding. Working memory of one encode call; every array grows on demand. */

typedef struct {
    int id, prev, next; /* id < 0: merged into the symbol on its left */
} bpe_sym;

typedef struct {
    int rank, pos;
} bpe_cand;

typedef struct {
    /* Per code point of the stretch being split; these five share cap_text and grow together. */
    uint32_t *cp;
    unsigned char *cls;
    size_t *off;              /* byte offsets, plus one past the end */
    size_t *cuts, *cuts_next; /* piece ends, in code points: the current and the next step's */
    size_t cap_text, n_cuts;
    bpe_sym *sym;
    size_t cap_sym;
    bpe_cand *heap;
    size_t n_heap, cap_heap;
    int *ids;
    size_t n_ids, cap_ids;
    gkd_buf piece_str; /* the piece in byte-level form, for ignore_merges */
} scratch;

static void scratch_free(scratch *sc) {
    free(sc->cp);
    free(sc->cls);
    free(sc->off);
    free(sc->cuts);
    free(sc->cuts_next);
    free(sc->sym);
    free(sc->heap);
    free(sc->ids);
    gkd_buf_free(&sc->piece_str);
}

/* Makes *p hold at least `need` elements of `size` bytes; returns 0 when out of memory. */
static int reserve(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 1;
    size_t cap2 = *cap ? *cap : 16;
    while (cap2 < need) cap2 *= 2;
    void *q = realloc(*p, cap2 * size);
    if (!q) return 0;
    *p = q;
    *cap = cap2;
    return 1;
}

static gkd_status out_of_memory(const char *what) {
    return gkd_error_set(GKD_ERR_NOMEM, "tokenizer: out of memory %s", what);
}

static int push_id(scratch *sc, int id) {
    if (!reserve((void **)&sc->ids, &sc->cap_ids, sc->n_ids + 1, sizeof *sc->ids)) return 0;
    sc->ids[sc->n_ids++] = id;
    return 1;
}

/* --- Scanners: each returns the end of the regex match that starts at code point i (< n), where n is
 * the end of the piece being split, as the regex sees only that piece. Every alternative of these
 * patterns together matches any character, so a match is never empty. */

static size_t run_of(const unsigned char *cls, size_t n, size_t i, char_class c) {
    while (i < n && cls[i] == c) i++;
    return i;
}

static int is_newline(uint32_t cp) {
    return cp == '\r' || cp == '\n';
}

/* 's|'t|'re|'ve|'m|'ll|'d, case-insensitive when fold is set; returns the match length or 0. Under
 * Unicode case folding the only non-ASCII character equal to one of these letters is U+017F (long s). */
static size_t contraction(const uint32_t *cp, size_t n, size_t i, int fold) {
    if (cp[i] != '\'' || i + 1 >= n) return 0;
    uint32_t a = cp[i + 1], b = i + 2 < n ? cp[i + 2] : 0;
    if (fold) {
        a = a == 0x17F ? 's' : a < 0x80 && (a | 0x20) >= 'a' && (a | 0x20) <= 'z' ? a | 0x20 : a;
        b = b < 0x80 && (b | 0x20) >= 'a' && (b | 0x20) <= 'z' ? b | 0x20 : b;
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* \s+(?!\S)|\s+ at a space: a run of spaces followed by a non-space leaves its last space to start the
 * next piece (so " word" stays together), unless the run is a single space. */
static size_t trailing_space(const unsigned char *cls, size_t n, size_t i) {
    size_t e = run_of(cls, n, i, CLS_SPACE);
    return (e < n && e - i > 1) ? e - 1 : e;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t scan_gpt2(const uint32_t *cp, const unsigned char *cls, size_t n, size_t i) {
    size_t k = contraction(cp, n, i, 0);
    if (k) return i + k;
    if (cp[i] == ' ' && i + 1 < n && cls[i + 1] != CLS_SPACE) return run_of(cls, n, i + 1, cls[i + 1]);
    if (cls[i] != CLS_SPACE) return run_of(cls, n, i, cls[i]);
    return trailing_space(cls, n, i);
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|
 * \s+(?!\S)|\s+ with D = max_digits (3 for Llama-3, 1 for Qwen2). */
static size_t scan_llama3(const uint32_t *cp, const unsigned char *cls, size_t n, size_t i,
                          size_t max_digits) {
    size_t k = contraction(cp, n, i, 1);
    if (k) return i + k;
    if (cls[i] == CLS_LETTER) return run_of(cls, n, i, CLS_LETTER);
    if (cls[i] != CLS_NUMBER && !is_newline(cp[i]) && i + 1 < n && cls[i + 1] == CLS_LETTER)
        return run_of(cls, n, i + 1, CLS_LETTER);
    if (cls[i] == CLS_NUMBER) {
        size_t e = i;
        while (e < n && e - i < max_digits && cls[e] == CLS_NUMBER) e++;
        return e;
    }
    size_t p = cp[i] == ' ' && i + 1 < n && cls[i + 1] == CLS_OTHER ? i + 1 : i;
    if (cls[p] == CLS_OTHER) {
        size_t e = run_of(cls, n, p, CLS_OTHER);
        while (e < n && is_newline(cp[e])) e++;
        return e;
    }
    /* \s*[\r\n]+ backtracks to the last line break of the run of spaces. */
    size_t e = run_of(cls, n, i, CLS_SPACE);
    for (size_t j = e; j > i; j--)
        if (is_newline(cp[j - 1])) return j;
    return trailing_space(cls, n, i);
}

static size_t scan(step_kind kind, const uint32_t *cp, const unsigned char *cls, size_t n, size_t i) {
    switch (kind) {
    case STEP_SPLIT_LLAMA3:
        return scan_llama3(cp, cls, n, i, 3);
    case STEP_SPLIT_QWEN2:
        return scan_llama3(cp, cls, n, i, 1);
    default:
        return scan_gpt2(cp, cls, n, i);
    }
}

/* Splits the piece [start, end) of code points with one step, appending piece ends to out[*n...]. */
static void split_piece(const pre_step *step, const scratch *sc, size_t start, size_t end, size_t *out,
                        size_t *n) {
    if (step->kind == STEP_BYTE_LEVEL && !step->flag) {
        out[(*n)++] = end;
    } else if (step->kind == STEP_DIGITS) {
        for (size_t i = start; i < end;) {
            size_t e = i + 1;
            if (sc->cls[i] != CLS_NUMBER || !step->flag)
                while (e < end && (sc->cls[e] == CLS_NUMBER) == (sc->cls[i] == CLS_NUMBER)) e++;
            out[(*n)++] = e;
            i = e;
        }
    } else {
        for (size_t i = start; i < end;) {
            i = scan(step->kind, sc->cp, sc->cls, end, i);
            out[(*n)++] = i;
        }
    }
}

static int reserve_text(scratch *sc, size_t need) {
    if (need <= sc->cap_text) return 1;
    size_t cap = sc->cap_text ? sc->cap_text : 64;
    while (cap < need) cap *= 2;
    /* An array grown before a later one fails is merely larger than cap_text says. */
    void *p;
    if (!(p = realloc(sc->cp, cap * sizeof *sc->cp))) return 0;
    sc->cp = p;
    if (!(p = realloc(sc->cls, cap * sizeof *sc->cls))) return 0;
    sc->cls = p;
    if (!(p = realloc(sc->off, cap * sizeof *sc->off))) return 0;
    sc->off = p;
    if (!(p = realloc(sc->cuts, cap * sizeof *sc->cuts))) return 0;
    sc->cuts = p;
    if (!(p = realloc(sc->cuts_next, cap * sizeof *sc->cuts_next))) return 0;
    sc->cuts_next = p;
    sc->cap_text = cap;
    return 1;
}

/* Runs the pre-tokenizer over s[0..len): sc->cuts[0..n_cuts) are the piece ends in code points and
 * sc->off maps them to bytes. */
static gkd_status split_stretch(const gkd_tokenizer *tok, const unsigned char *s, size_t len, scratch *sc) {
    if (!reserve_text(sc, len + 1)) return out_of_memory("splitting text");
    size_t n = 0;
    for (size_t i = 0; i < len; n++) {
        sc->off[n] = i;
        i += utf8_next(s, len, i, &sc->cp[n]);
        sc->cls[n] = (unsigned char)classify(sc->cp[n]);
    }
    sc->off[n] = len;
    sc->n_cuts = 0;
    if (n) sc->cuts[sc->n_cuts++] = n;
    for (int k = 0; k < tok->n_steps; k++) {
        size_t n_next = 0, start = 0;
        for (size_t c = 0; c < sc->n_cuts; c++) {
            split_piece(&tok->steps[k], sc, start, sc->cuts[c], sc->cuts_next, &n_next);
            start = sc->cuts[c];
        }
        size_t *t = sc->cuts;
        sc->cuts = sc->cuts_next;
        sc->cuts_next = t;
        sc->n_cuts = n_next;
    }
    return GKD_OK;
}

static int cand_less(bpe_cand a, bpe_cand b) {
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void heap_push(scratch *sc, bpe_cand c) {
    size_t i = sc->n_heap++;
    while (i > 0 && cand_less(c, sc->heap[(i - 1) / 2])) {
        sc->heap[i] = sc->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    sc->heap[i] = c;
}

static bpe_cand heap_pop(scratch *sc) {
    bpe_cand top = sc->heap[0], last = sc->heap[--sc->n_heap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= sc->n_heap) break;
        if (c + 1 < sc->n_heap && cand_less(sc->heap[c + 1], sc->heap[c])) c++;
        if (!cand_less(sc->heap[c], last)) break;
        sc->heap[i] = sc->heap[c];
        i = c;
    }
    if (sc->n_heap) sc->heap[i] = last;
    return top;
}

static int merge_rank_of(const gkd_tokenizer *tok, int left, int right) {
    return pair_map_get(&tok->merge_rank, pair_key(left, right));
}

static void push_candidate(const gkd_tokenizer *tok, scratch *sc, int pos) {
    int next = sc->sym[pos].next;
    if (next < 0) return;
    int rank = merge_rank_of(tok, sc->sym[pos].id, sc->sym[next].id);
    if (rank >= 0) heap_push(sc, (bpe_cand){rank, pos});
}

/* BPE on one piece: repeatedly merges the adjacent pair of lowest rank, the leftmost of equals, which is
 * the order Hugging Face applies merges in. Candidates whose symbols changed since they were queued are
 * dropped when they surface. */
static gkd_status bpe_piece(const gkd_tokenizer *tok, const unsigned char *s, size_t len, scratch *sc) {
    if (tok->ignore_merges) {
        sc->piece_str.len = 0;
        bytes_to_str(s, len, &sc->piece_str);
        if (sc->piece_str.failed) return out_of_memory("encoding");
        int id = str_map_get(&tok->by_str, sc->piece_str.data, sc->piece_str.len);
        if (id >= 0 && tok->tokens[id].in_vocab) return push_id(sc, id) ? GKD_OK : out_of_memory("encoding");
    }
    /* Each merge queues at most two candidates besides the len - 1 initial ones. */
    if (!reserve((void **)&sc->sym, &sc->cap_sym, len, sizeof *sc->sym) ||
        !reserve((void **)&sc->heap, &sc->cap_heap, 3 * len, sizeof *sc->heap))
        return out_of_memory("encoding");
    /* A byte the vocabulary has no token for is dropped and its neighbours become adjacent, as Hugging
     * Face's BPE does with a character outside its vocabulary when it has no unk_token. */
    size_t n = 0;
    for (size_t k = 0; k < len; k++) {
        if (tok->byte_id[s[k]] < 0) continue;
        sc->sym[n] = (bpe_sym){tok->byte_id[s[k]], (int)n - 1, -1};
        if (n) sc->sym[n - 1].next = (int)n;
        n++;
    }
    sc->n_heap = 0;
    for (size_t k = 0; k + 1 < n; k++) push_candidate(tok, sc, (int)k);
    while (sc->n_heap) {
        bpe_cand c = heap_pop(sc);
        bpe_sym *a = &sc->sym[c.pos];
        if (a->id < 0 || a->next < 0 || merge_rank_of(tok, a->id, sc->sym[a->next].id) != c.rank) continue;
        bpe_sym *b = &sc->sym[a->next];
        a->id = tok->merges[c.rank].result;
        b->id = -1;
        a->next = b->next;
        if (a->next >= 0) sc->sym[a->next].prev = c.pos;
        if (a->prev >= 0) push_candidate(tok, sc, a->prev);
        push_candidate(tok, sc, c.pos);
    }
    for (int k = n ? 0 : -1; k >= 0; k = sc->sym[k].next)
        if (!push_id(sc, sc->sym[k].id)) return out_of_memory("encoding");
    return GKD_OK;
}

static gkd_status encode_text(const gkd_tokenizer *tok, const unsigned char *s, size_t len, scratch *sc) {
    gkd_status st = split_stretch(tok, s, len, sc);
    if (st != GKD_OK) return st;
    /* bpe_piece reuses no splitting arrays, so the cuts stay valid while pieces are encoded. */
    size_t start = 0;
    for (size_t c = 0; c < sc->n_cuts && st == GKD_OK; c++) {
        size_t end = sc->off[sc->cuts[c]];
        st = bpe_piece(tok, s + start, end - start, sc);
        start = end;
    }
    return st;
}

/* Hugging Face matches the added tokens that are not "normalized" first, then the normalized ones in the
 * text between; pass 0 and 1 mirror that, pass 2 is plain text. */
static gkd_status encode_added(const gkd_tokenizer *tok, const unsigned char *s, size_t len, int pass,
                               scratch *sc) {
    if (pass == 2) return encode_text(tok, s, len, sc);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (!(tok->added_first[s[i]] & (1u << pass))) continue;
        int best = -1;
        size_t best_len = 0;
        for (int k = 0; k < tok->n_added; k++) {
            const token *t = &tok->tokens[tok->added[k]];
            if ((int)t->normalized == pass && t->len > best_len && t->len <= len - i &&
                memcmp(t->bytes, s + i, t->len) == 0)
                best = tok->added[k], best_len = t->len;
        }
        if (best < 0) continue;
        gkd_status st = encode_added(tok, s + start, i - start, pass + 1, sc);
        if (st != GKD_OK) return st;
        if (!push_id(sc, best)) return out_of_memory("encoding");
        i += best_len - 1;
        start = i + 1;
    }
    return encode_added(tok, s + start, len - start, pass + 1, sc);
}

static gkd_status encode(const gkd_tokenizer *tok, const char *text, size_t len, int pass, int **ids,
                         int *n) {
    if (!tok || (!text && len) || !ids || !n)
        return gkd_error_set(GKD_ERR_ARG, "tokenizer encode: NULL argument");
    scratch sc = {0};
    gkd_status st = push_id(&sc, 0) ? GKD_OK : out_of_memory("encoding"); /* so that *ids is never NULL */
    sc.n_ids = 0;
    if (st == GKD_OK && len) st = encode_added(tok, (const unsigned char *)text, len, pass, &sc);
    if (st == GKD_OK && sc.n_ids > (size_t)INT32_MAX)
        st = gkd_error_set(GKD_ERR_ARG, "tokenizer encode: more than 2^31 tokens");
    if (st == GKD_OK) {
        *ids = sc.ids;
        *n = (int)sc.n_ids;
        sc.ids = NULL;
    }
    scratch_free(&sc);
    return st;
}

gkd_status gkd_tokenizer_encode(const gkd_tokenizer *tok, const char *text, size_t len, int **ids, int *n) {
    return encode(tok, text, len, 2, ids, n);
}

gkd_status gkd_tokenizer_encode_special(const gkd_tokenizer *tok, const char *text, size_t len, int **ids,
                                        int *n) {
    return encode(tok, text, len, 0, ids, n);
}

gkd_status gkd_tokenizer_pretokenize(const gkd_tokenizer *tok, const char *text, size_t len, size_t **ends,
                                     int *n) {
    if (!tok || (!text && len) || !ends || !n)
        return gkd_error_set(GKD_ERR_ARG, "tokenizer pretokenize: NULL argument");
    scratch sc = {0};
    gkd_status st = split_stretch(tok, (const unsigned char *)text, len, &sc);
    size_t *out = NULL;
    if (st == GKD_OK) {
        out = malloc((sc.n_cuts + 1) * sizeof *out);
        if (!out) st = out_of_memory("splitting text");
    }
    if (st == GKD_OK) {
        for (size_t c = 0; c < sc.n_cuts; c++) out[c] = sc.off[sc.cuts[c]];
        *ends = out;
        *n = (int)sc.n_cuts;
    }
    scratch_free(&sc);
    return st;
}

gkd_status gkd_tokenizer_decode(const gkd_tokenizer *tok, const int *ids, int n, char **text, size_t *len) {
    if (!tok || (!ids && n > 0) || n < 0 || !text || !len)
        return gkd_error_set(GKD_ERR_ARG, "tokenizer decode: bad argument");
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->n_tokens)
            return gkd_error_set(GKD_ERR_ARG,
                                 "tokenizer decode: id %d at position %d is outside the vocabulary (%d)",
                                 ids[i], i, tok->n_tokens);
        total += tok->tokens[ids[i]].len;
    }
    char *out = malloc(total + 1);
    if (!out) return out_of_memory("decoding");
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        memcpy(out + at, tok->tokens[ids[i]].bytes, tok->tokens[ids[i]].len);
        at += tok->tokens[ids[i]].len;
    }
    out[at] = '\0';
    *text = out;
    *len = at;
    return GKD_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * Building a tokenizer's indexes from its tokens and merges (shared by training and loading). */

/* Fills by_str and byte_id; `where` prefixes errors. */
static gkd_status index_tokens(gkd_tokenizer *tok, const char *where) {
    for (int id = 0; id < tok->n_tokens; id++) {
        const token *t = &tok->tokens[id];
        int got = str_map_intern(&tok->by_str, t->str, t->str_len, id);
        if (got == -2) return out_of_memory("indexing the vocabulary");
        if (got != id)
            return gkd_error_set(GKD_ERR_FORMAT, "%s: ids %d and %d have the same string \"%s\"", where, got,
                                 id, t->str);
    }
    for (int b = 0; b < 256; b++) {
        gkd_buf s = {0};
        unsigned char byte = (unsigned char)b;
        bytes_to_str(&byte, 1, &s);
        if (s.failed) return out_of_memory("indexing the vocabulary");
        int id = str_map_get(&tok->by_str, s.data, s.len);
        gkd_buf_free(&s);
        /* Real vocabularies may lack bytes no training text had (SmolLM2 lacks 0xC0, 0xC1, 0xF5-0xFF and a
         * few controls); bpe_piece drops such bytes. */
        tok->byte_id[b] = id >= 0 && tok->tokens[id].in_vocab ? id : -1;
    }
    return GKD_OK;
}

/* Fills merge_rank (a later duplicate of a pair wins, as in Hugging Face), added_first and the roles. */
static gkd_status index_merges_and_added(gkd_tokenizer *tok) {
    for (int r = 0; r < tok->n_merges; r++)
        if (!pair_map_put(&tok->merge_rank, pair_key(tok->merges[r].left, tok->merges[r].right), r))
            return out_of_memory("indexing merges");
    memset(tok->added_first, 0, sizeof tok->added_first);
    for (int k = 0; k < tok->n_added; k++) {
        const token *t = &tok->tokens[tok->added[k]];
        tok->added_first[(unsigned char)t->bytes[0]] |= (unsigned char)(1u << t->normalized);
    }
    find_roles(tok);
    return GKD_OK;
}

/* Sets a token's bytes and string (copied); returns 0 when out of memory. */
static int set_token(token *t, const char *bytes, size_t len, const char *str, size_t str_len) {
    t->bytes = malloc(len + 1);
    t->str = malloc(str_len + 1);
    if (!t->bytes || !t->str) return 0;
    memcpy(t->bytes, bytes, len);
    t->bytes[len] = '\0';
    memcpy(t->str, str, str_len);
    t->str[str_len] = '\0';
    t->len = len;
    t->str_len = str_len;
    return 1;
}

/* ---------------------------------------------------------------------------------------------------
 * Training. Pair counts are kept over the unique pre-token words (weighted by how often each occurs)
 * and updated incrementally: a merge touches only the words that hold its pair (each pair lists them),
 * and a max-queue of (count, pair) entries finds the next merge. A pair's count only falls once the pair
 * exists (new pairs contain the new token), so stale entries are re-queued with their current count when
 * they surface, and the first entry whose count is current is the true maximum. */

typedef struct {
    size_t start; /* its symbols in the arena */
    int len;
    int64_t count;
} train_word;

typedef struct {
    int a, b;
    int64_t count;
    int *words; /* words that hold or held the pair; may repeat */
    int n_words, cap_words;
    int fresh_at; /* the merge step that last listed it as fresh */
} train_pair;

typedef struct {
    int64_t count;
    int pair;
} queue_entry;

typedef struct {
    train_word *words;
    int n_words;
    int *arena;
    size_t n_symbols; /* in all words, before any merge */
    int *seen;        /* per word: the last merge step that visited it */
    train_pair *pairs;
    int n_pairs, cap_pairs;
    pair_map pair_index;
    queue_entry *queue;
    size_t n_queue, cap_queue;
    int *fresh; /* pairs holding the new token, to queue after a merge */
    int n_fresh, cap_fresh;
} trainer;

static void trainer_free(trainer *tr) {
    for (int i = 0; i < tr->n_pairs; i++) free(tr->pairs[i].words);
    free(tr->pairs);
    free(tr->words);
    free(tr->arena);
    free(tr->seen);
    pair_map_free(&tr->pair_index);
    free(tr->queue);
    free(tr->fresh);
}

/* Adds delta occurrences of (a, b) in word w, creating the pair when new and listing w in it when
 * `list_word`; returns the pair's index or -1 when out of memory. */
static int pair_add(trainer *tr, int a, int b, int64_t delta, int w, int list_word) {
    uint64_t key = pair_key(a, b);
    int p = pair_map_get(&tr->pair_index, key);
    if (p < 0) {
        size_t cap = (size_t)tr->cap_pairs;
        if (!reserve((void **)&tr->pairs, &cap, (size_t)tr->n_pairs + 1, sizeof *tr->pairs)) return -1;
        tr->cap_pairs = (int)cap;
        p = tr->n_pairs;
        if (!pair_map_put(&tr->pair_index, key, p)) return -1;
        tr->pairs[tr->n_pairs++] = (train_pair){.a = a, .b = b, .fresh_at = -1};
    }
    train_pair *pr = &tr->pairs[p];
    pr->count += delta;
    if (list_word && (pr->n_words == 0 || pr->words[pr->n_words - 1] != w)) {
        size_t cap = (size_t)pr->cap_words;
        if (!reserve((void **)&pr->words, &cap, (size_t)pr->n_words + 1, sizeof *pr->words)) return -1;
        pr->cap_words = (int)cap;
        pr->words[pr->n_words++] = w;
    }
    return p;
}

/* Queue order: higher count first, then the smaller left id, then the smaller right id. */
static int entry_before(const trainer *tr, queue_entry x, queue_entry y) {
    if (x.count != y.count) return x.count > y.count;
    const train_pair *a = &tr->pairs[x.pair], *b = &tr->pairs[y.pair];
    return a->a != b->a ? a->a < b->a : a->b < b->b;
}

static int queue_push(trainer *tr, int pair) {
    if (!reserve((void **)&tr->queue, &tr->cap_queue, tr->n_queue + 1, sizeof *tr->queue)) return 0;
    queue_entry e = {tr->pairs[pair].count, pair};
    size_t i = tr->n_queue++;
    while (i > 0 && entry_before(tr, e, tr->queue[(i - 1) / 2])) {
        tr->queue[i] = tr->queue[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    tr->queue[i] = e;
    return 1;
}

static queue_entry queue_pop(trainer *tr) {
    queue_entry top = tr->queue[0], last = tr->queue[--tr->n_queue];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= tr->n_queue) break;
        if (c + 1 < tr->n_queue && entry_before(tr, tr->queue[c + 1], tr->queue[c])) c++;
        if (!entry_before(tr, tr->queue[c], last)) break;
        tr->queue[i] = tr->queue[c];
        i = c;
    }
    if (tr->n_queue) tr->queue[i] = last;
    return top;
}

/* Counts the unique pre-token words of the corpus and lays their bytes out as symbols. */
static gkd_status collect_words(trainer *tr, const gkd_tokenizer *splitter, const char *const *texts, int n) {
    str_map seen_words = {0};
    scratch sc = {0};
    size_t cap_words = 0, n_symbols = 0;
    const char **word_text = NULL;
    size_t cap_text = 0;
    gkd_status st = GKD_OK;
    for (int i = 0; i < n && st == GKD_OK; i++) {
        const char *text = texts[i] ? texts[i] : "";
        st = split_stretch(splitter, (const unsigned char *)text, strlen(text), &sc);
        size_t start = 0;
        for (size_t c = 0; c < sc.n_cuts && st == GKD_OK; c++) {
            size_t end = sc.off[sc.cuts[c]];
            int w = str_map_intern(&seen_words, text + start, end - start, tr->n_words);
            if (w == -2 || (w == tr->n_words &&
                            (!reserve((void **)&tr->words, &cap_words, (size_t)w + 1, sizeof *tr->words) ||
                             !reserve((void **)&word_text, &cap_text, (size_t)w + 1, sizeof *word_text)))) {
                st = out_of_memory("counting words");
                break;
            }
            if (w == tr->n_words) {
                tr->words[w] = (train_word){n_symbols, (int)(end - start), 0};
                word_text[w] = text + start;
                n_symbols += end - start;
                tr->n_words++;
            }
            tr->words[w].count++;
            start = end;
        }
    }
    tr->n_symbols = n_symbols;
    if (st == GKD_OK) {
        tr->arena = malloc((n_symbols + 1) * sizeof *tr->arena);
        tr->seen = malloc(((size_t)tr->n_words + 1) * sizeof *tr->seen);
        if (!tr->arena || !tr->seen) st = out_of_memory("counting words");
    }
    for (int w = 0; w < tr->n_words && st == GKD_OK; w++) {
        tr->seen[w] = -1;
        for (int k = 0; k < tr->words[w].len; k++)
            tr->arena[tr->words[w].start + (size_t)k] = (unsigned char)word_text[w][k]; /* byte b is id b */
    }
    free(word_text);
    scratch_free(&sc);
    str_map_free(&seen_words);
    return st;
}

/* Replaces every (a, b) in word w by c, moving the word's pair counts along. */
static gkd_status merge_word(trainer *tr, int w, int a, int b, int c, int step) {
    train_word *wd = &tr->words[w];
    int *sym = tr->arena + wd->start;
    int has = 0;
    for (int k = 0; k + 1 < wd->len && !has; k++) has = sym[k] == a && sym[k + 1] == b;
    if (!has) return GKD_OK;
    for (int k = 0; k + 1 < wd->len; k++)
        if (pair_add(tr, sym[k], sym[k + 1], -wd->count, w, 0) < 0) return out_of_memory("training");
    int m = 0;
    for (int k = 0; k < wd->len;) {
        if (k + 1 < wd->len && sym[k] == a && sym[k + 1] == b) {
            sym[m++] = c;
            k += 2;
        } else {
            sym[m++] = sym[k++];
        }
    }
    wd->len = m;
    for (int k = 0; k + 1 < m; k++) {
        int is_new = sym[k] == c || sym[k + 1] == c;
        int p = pair_add(tr, sym[k], sym[k + 1], wd->count, w, is_new);
        if (p < 0) return out_of_memory("training");
        if (is_new && tr->pairs[p].fresh_at != step) {
            size_t cap = (size_t)tr->cap_fresh;
            if (!reserve((void **)&tr->fresh, &cap, (size_t)tr->n_fresh + 1, sizeof *tr->fresh))
                return out_of_memory("training");
            tr->cap_fresh = (int)cap;
            tr->pairs[p].fresh_at = step;
            tr->fresh[tr->n_fresh++] = p;
        }
    }
    return GKD_OK;
}

/* 1 when the byte-level string of bytes equals one of the specials, which would give two vocabulary
 * entries the same string. */
static int collides_with_special(const char *bytes, size_t len, const char *const *specials, int n_specials) {
    gkd_buf s = {0};
    bytes_to_str((const unsigned char *)bytes, len, &s);
    int hit = 0;
    for (int k = 0; k < n_specials && !hit && !s.failed; k++)
        hit = strlen(specials[k]) == s.len && memcmp(specials[k], s.data, s.len) == 0;
    gkd_buf_free(&s);
    return hit;
}

/* Runs merges until tok holds max_tokens tokens or nothing is left to merge. */
static gkd_status learn_merges(trainer *tr, gkd_tokenizer *tok, int max_tokens, const char *const *specials,
                               int n_specials) {
    for (int w = 0; w < tr->n_words; w++) {
        const int *sym = tr->arena + tr->words[w].start;
        for (int k = 0; k + 1 < tr->words[w].len; k++)
            if (pair_add(tr, sym[k], sym[k + 1], tr->words[w].count, w, 1) < 0)
                return out_of_memory("training");
    }
    for (int p = 0; p < tr->n_pairs; p++)
        if (!queue_push(tr, p)) return out_of_memory("training");
    while (tok->n_tokens < max_tokens && tr->n_queue) {
        queue_entry e = queue_pop(tr);
        int64_t now = tr->pairs[e.pair].count;
        if (now != e.count) {
            if (now > 0 && !queue_push(tr, e.pair)) return out_of_memory("training");
            continue;
        }
        int a = tr->pairs[e.pair].a, b = tr->pairs[e.pair].b, c = tok->n_tokens, step = tok->n_merges;
        const token *ta = &tok->tokens[a], *tb = &tok->tokens[b];
        size_t len = ta->len + tb->len;
        char *bytes = malloc(len + 1);
        if (!bytes) return out_of_memory("training");
        memcpy(bytes, ta->bytes, ta->len);
        memcpy(bytes + ta->len, tb->bytes, tb->len);
        if (collides_with_special(bytes, len, specials, n_specials)) {
            free(bytes); /* never merged: the pair is dropped from the queue for good */
            continue;
        }
        gkd_buf str = {0};
        bytes_to_str((const unsigned char *)bytes, len, &str);
        tok->n_tokens++; /* counted before filling, so that a half-made token is still freed */
        int ok = !str.failed && set_token(&tok->tokens[c], bytes, len, str.data, str.len);
        free(bytes);
        gkd_buf_free(&str);
        if (!ok) return out_of_memory("training");
        tok->tokens[c].in_vocab = 1;
        tok->merges[tok->n_merges++] = (merge){a, b, c};
        tr->n_fresh = 0;
        for (int i = 0; i < tr->pairs[e.pair].n_words; i++) {
            int w = tr->pairs[e.pair].words[i];
            if (tr->seen[w] == step) continue;
            tr->seen[w] = step;
            gkd_status st = merge_word(tr, w, a, b, c, step);
            if (st != GKD_OK) return st;
        }
        for (int i = 0; i < tr->n_fresh; i++)
            if (tr->pairs[tr->fresh[i]].count > 0 && !queue_push(tr, tr->fresh[i]))
                return out_of_memory("training");
    }
    return GKD_OK;
}

static gkd_tokenizer *new_tokenizer(int cap_tokens, int cap_merges) {
    gkd_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return NULL;
    tok->tokens = calloc((size_t)cap_tokens + 1, sizeof *tok->tokens);
    tok->merges = malloc(((size_t)cap_merges + 1) * sizeof *tok->merges);
    if (!tok->tokens || !tok->merges) {
        gkd_tokenizer_free(tok);
        return NULL;
    }
    for (int r = 0; r < GKD_TOKEN_ROLE_COUNT; r++) tok->role[r] = -1;
    return tok;
}

gkd_status gkd_tokenizer_train(const char *const *texts, int n, int vocab_size, const char *const *specials,
                               int n_specials, gkd_tokenizer **out) {
    if ((!texts && n > 0) || n < 0 || (!specials && n_specials > 0) || n_specials < 0 || !out)
        return gkd_error_set(GKD_ERR_ARG, "tokenizer train: bad argument");
    if (vocab_size < 256 + n_specials)
        return gkd_error_set(GKD_ERR_ARG,
                             "tokenizer train: vocab_size %d is below 256 bytes + %d special tokens",
                             vocab_size, n_specials);
    for (int k = 0; k < n_specials; k++) {
        if (!specials[k] || !specials[k][0])
            return gkd_error_set(GKD_ERR_ARG, "tokenizer train: special token %d is empty", k);
        unsigned char byte[2];
        size_t len = strlen(specials[k]);
        if (len <= 2 && str_to_bytes(specials[k], len, byte) == 1)
            return gkd_error_set(GKD_ERR_ARG,
                                 "tokenizer train: special token \"%s\" is the string of byte 0x%02x",
                                 specials[k], byte[0]);
        for (int j = 0; j < k; j++)
            if (strcmp(specials[j], specials[k]) == 0)
                return gkd_error_set(GKD_ERR_ARG, "tokenizer train: special token \"%s\" is listed twice",
                                     specials[k]);
    }
    /* Words first: each merge removes at least one symbol, which bounds the tables for any vocab_size. */
    gkd_tokenizer splitter = {.steps = {{STEP_BYTE_LEVEL, 1}}, .n_steps = 1};
    trainer tr = {0};
    gkd_status st = collect_words(&tr, &splitter, texts, n);
    int max_merges = vocab_size - 256 - n_specials;
    if ((size_t)max_merges > tr.n_symbols) max_merges = (int)tr.n_symbols;
    gkd_tokenizer *tok = st == GKD_OK ? new_tokenizer(256 + max_merges + n_specials, max_merges) : NULL;
    if (!tok) {
        trainer_free(&tr);
        return st == GKD_OK ? out_of_memory("training") : st;
    }
    tok->steps[0] = splitter.steps[0];
    tok->n_steps = 1;
    for (int b = 0; b < 256 && st == GKD_OK; b++) {
        char byte = (char)b;
        gkd_buf str = {0};
        bytes_to_str((const unsigned char *)&byte, 1, &str);
        if (str.failed || !set_token(&tok->tokens[b], &byte, 1, str.data, str.len))
            st = out_of_memory("training");
        tok->tokens[b].in_vocab = 1;
        tok->n_tokens++;
        gkd_buf_free(&str);
    }
    if (st == GKD_OK) st = learn_merges(&tr, tok, 256 + max_merges, specials, n_specials);
    trainer_free(&tr);
    if (st == GKD_OK) {
        tok->added = malloc(((size_t)n_specials + 1) * sizeof *tok->added);
        if (!tok->added) st = out_of_memory("training");
    }
    for (int k = 0; k < n_specials && st == GKD_OK; k++) {
        token *t = &tok->tokens[tok->n_tokens];
        size_t len = strlen(specials[k]);
        if (!set_token(t, specials[k], len, specials[k], len)) st = out_of_memory("training");
        t->in_vocab = t->added = t->special = 1;
        tok->added[tok->n_added++] = tok->n_tokens++;
    }
    if (st == GKD_OK) st = index_tokens(tok, "tokenizer train");
    if (st == GKD_OK) st = index_merges_and_added(tok);
    if (st != GKD_OK) {
        gkd_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return GKD_OK;
}

/* ---------------------------------------------------------------------------------------------------
 * tokenizer.json. Only what changes the ids is read; a field that would change them in a way this file
 * does not implement (a normalizer, byte_fallback, lstrip on an added token, an unknown split pattern)
 * is refused with its name rather than ignored. */

static const char pattern_gpt2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char pattern_llama3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char pattern_qwen2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                                    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static gkd_status bad(const char *where, const char *field, const char *what) {
    return gkd_error_set(GKD_ERR_FORMAT, "%s: %s: %s", where, field, what);
}

static int is_null(const gkd_json *v) {
    return !v || v->type == GKD_JSON_NULL;
}

/* Reads an optional boolean member (absent or null gives fallback). */
static gkd_status get_bool(const gkd_json *obj, const char *key, int fallback, const char *where,
                           const char *field, int *out) {
    const gkd_json *v = gkd_json_get(obj, key);
    *out = fallback;
    if (is_null(v)) return GKD_OK;
    if (v->type != GKD_JSON_BOOL)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: %s.%s: not a boolean", where, field, key);
    *out = v->boolean;
    return GKD_OK;
}

/* A non-negative integer id that fits an int, or -1. */
static int json_id(const gkd_json *v) {
    if (!v || v->type != GKD_JSON_NUMBER || v->number < 0 || v->number > INT32_MAX - 1 ||
        v->number != (double)(int)v->number)
        return -1;
    return (int)v->number;
}

static int type_is(const gkd_json *v, const char *type) {
    const char *t = gkd_json_get_string(v, "type", NULL);
    return t && strcmp(t, type) == 0;
}

static gkd_status parse_step(gkd_tokenizer *tok, const gkd_json *v, const char *where, const char *field) {
    if (!v || v->type != GKD_JSON_OBJECT) return bad(where, field, "not an object");
    if (tok->n_steps == MAX_PRE_STEPS) return bad(where, field, "too many pre-tokenizer steps");
    pre_step *step = &tok->steps[tok->n_steps];
    gkd_status st;
    int flag;
    if (type_is(v, "ByteLevel")) {
        int prefix;
        if ((st = get_bool(v, "add_prefix_space", 0, where, field, &prefix)) != GKD_OK) return st;
        if (prefix)
            return gkd_error_set(GKD_ERR_FORMAT, "%s: %s.add_prefix_space: true is not supported", where,
                                 field);
        if ((st = get_bool(v, "use_regex", 1, where, field, &flag)) != GKD_OK) return st;
        *step = (pre_step){STEP_BYTE_LEVEL, flag};
    } else if (type_is(v, "Digits")) {
        if ((st = get_bool(v, "individual_digits", 0, where, field, &flag)) != GKD_OK) return st;
        *step = (pre_step){STEP_DIGITS, flag};
    } else if (type_is(v, "Split")) {
        const char *regex = gkd_json_get_string(gkd_json_get(v, "pattern"), "Regex", NULL);
        const char *behavior = gkd_json_get_string(v, "behavior", "");
        int invert;
        if ((st = get_bool(v, "invert", 0, where, field, &invert)) != GKD_OK) return st;
        if (!regex)
            return gkd_error_set(
                GKD_ERR_FORMAT, "%s: %s.pattern: only a {\"Regex\": ...} pattern is supported", where, field);
        if (strcmp(behavior, "Isolated") != 0 || invert)
            return gkd_error_set(GKD_ERR_FORMAT,
                                 "%s: %s.behavior: only \"Isolated\" without invert is supported", where,
                                 field);
        if (strcmp(regex, pattern_gpt2) == 0)
            *step = (pre_step){STEP_SPLIT_GPT2, 0};
        else if (strcmp(regex, pattern_llama3) == 0)
            *step = (pre_step){STEP_SPLIT_LLAMA3, 0};
        else if (strcmp(regex, pattern_qwen2) == 0)
            *step = (pre_step){STEP_SPLIT_QWEN2, 0};
        else
            return gkd_error_set(
                GKD_ERR_FORMAT,
                "%s: %s.pattern: unsupported regex (the GPT-2, Llama-3 and Qwen2 patterns are)", where,
                field);
    } else {
        const char *type = gkd_json_get_string(v, "type", "(none)");
        return gkd_error_set(GKD_ERR_FORMAT,
                             "%s: %s.type: \"%s\" is not supported (ByteLevel, Split, Digits are)", where,
                             field, type);
    }
    tok->n_steps++;
    return GKD_OK;
}

static gkd_status parse_pre_tokenizer(gkd_tokenizer *tok, const gkd_json *v, const char *where) {
    if (is_null(v)) return bad(where, "pre_tokenizer", "missing (a byte-level BPE needs a ByteLevel step)");
    gkd_status st;
    if (type_is(v, "Sequence")) {
        const gkd_json *list = gkd_json_get(v, "pretokenizers");
        if (!list || list->type != GKD_JSON_ARRAY)
            return bad(where, "pre_tokenizer.pretokenizers", "not an array");
        tok->steps_in_sequence = 1;
        for (size_t i = 0; i < list->len; i++) {
            char field[64];
            snprintf(field, sizeof field, "pre_tokenizer.pretokenizers[%zu]", i);
            if ((st = parse_step(tok, list->items[i], where, field)) != GKD_OK) return st;
        }
    } else if ((st = parse_step(tok, v, where, "pre_tokenizer")) != GKD_OK) {
        return st;
    }
    /* After ByteLevel the text is in its alphabet (a space is "Ġ", a letter), so later splits would see
     * different classes; every known tokenizer puts it last. */
    for (int k = 0; k < tok->n_steps; k++)
        if ((tok->steps[k].kind == STEP_BYTE_LEVEL) != (k == tok->n_steps - 1))
            return bad(where, "pre_tokenizer", "exactly one ByteLevel step, the last, is supported");
    return GKD_OK;
}

static gkd_status check_model(const gkd_json *model, const char *where, int *ignore_merges) {
    if (!model || model->type != GKD_JSON_OBJECT) return bad(where, "model", "missing or not an object");
    if (!type_is(model, "BPE")) return bad(where, "model.type", "not \"BPE\"");
    int flag;
    gkd_status st;
    if ((st = get_bool(model, "byte_fallback", 0, where, "model", &flag)) != GKD_OK) return st;
    if (flag)
        return bad(where, "model.byte_fallback",
                   "true is not supported (byte-level BPE has no unknown bytes)");
    if ((st = get_bool(model, "ignore_merges", 0, where, "model", ignore_merges)) != GKD_OK) return st;
    if (!is_null(gkd_json_get(model, "dropout")))
        return bad(where, "model.dropout", "only null is supported");
    const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const gkd_json *v = gkd_json_get(model, affixes[k]);
        if (!is_null(v) && (v->type != GKD_JSON_STRING || v->len))
            return gkd_error_set(GKD_ERR_FORMAT, "%s: model.%s: only null is supported", where, affixes[k]);
    }
    return GKD_OK;
}

/* Fills the token table from model.vocab and added_tokens. */
static gkd_status read_tokens(gkd_tokenizer *tok, const gkd_json *vocab, const gkd_json *added,
                              const char *where) {
    if (!vocab || vocab->type != GKD_JSON_OBJECT)
        return bad(where, "model.vocab", "missing or not an object");
    if (!is_null(added) && added->type != GKD_JSON_ARRAY) return bad(where, "added_tokens", "not an array");
    size_t n_added = is_null(added) ? 0 : added->len;
    char field[64];
    /* Dense ids: no id can reach past the number of entries, which also bounds the allocation. */
    size_t n_entries = vocab->len + n_added;
    int max_id = -1;
    for (size_t i = 0; i < vocab->len; i++) {
        int id = json_id(vocab->items[i]);
        if (id < 0)
            return gkd_error_set(GKD_ERR_FORMAT, "%s: model.vocab: \"%s\": id is not a non-negative integer",
                                 where, vocab->keys[i]);
        if (id > max_id) max_id = id;
    }
    for (size_t i = 0; i < n_added; i++) {
        snprintf(field, sizeof field, "added_tokens[%zu]", i);
        const gkd_json *t = added->items[i];
        const gkd_json *content = gkd_json_get(t, "content");
        int id = json_id(gkd_json_get(t, "id"));
        if (t->type != GKD_JSON_OBJECT || id < 0)
            return bad(where, field, "needs a non-negative integer \"id\"");
        if (!content || content->type != GKD_JSON_STRING || !content->len)
            return bad(where, field, "needs a non-empty string \"content\"");
        const char *unsupported[] = {"lstrip", "rstrip", "single_word"};
        for (int k = 0; k < 3; k++) {
            int flag;
            gkd_status st = get_bool(t, unsupported[k], 0, where, field, &flag);
            if (st != GKD_OK) return st;
            if (flag)
                return gkd_error_set(GKD_ERR_FORMAT, "%s: %s.%s: true is not supported", where, field,
                                     unsupported[k]);
        }
        if (id > max_id) max_id = id;
    }
    if ((size_t)max_id >= n_entries)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: model.vocab: id %d leaves gaps (%zu tokens in all)", where,
                             max_id, n_entries);
    tok->n_tokens = max_id + 1;
    tok->tokens = calloc((size_t)tok->n_tokens + 1, sizeof *tok->tokens);
    tok->added = malloc((n_added + 1) * sizeof *tok->added);
    char *no_bytes = calloc((size_t)tok->n_tokens + 1, 1); /* vocab strings outside the alphabet */
    size_t cap_bytes = 1024;
    unsigned char *bytes = malloc(cap_bytes);
    gkd_status st = GKD_OK;
    if (!tok->tokens || !tok->added || !no_bytes || !bytes) st = out_of_memory("loading");
    for (size_t i = 0; i < vocab->len && st == GKD_OK; i++) {
        int id = json_id(vocab->items[i]);
        const char *key = vocab->keys[i];
        size_t key_len = strlen(key);
        token *t = &tok->tokens[id];
        if (t->str) {
            st = gkd_error_set(GKD_ERR_FORMAT, "%s: model.vocab: id %d is given to \"%s\" and \"%s\"", where,
                               id, t->str, key);
        } else if (!reserve((void **)&bytes, &cap_bytes, key_len + 1, 1)) {
            st = out_of_memory("loading");
        } else {
            long n = str_to_bytes(key, key_len, bytes);
            no_bytes[id] = n < 0;
            if (!set_token(t, n >= 0 ? (const char *)bytes : "", n >= 0 ? (size_t)n : 0, key, key_len))
                st = out_of_memory("loading");
            t->in_vocab = 1;
        }
    }
    for (size_t i = 0; i < n_added && st == GKD_OK; i++) {
        snprintf(field, sizeof field, "added_tokens[%zu]", i);
        const gkd_json *a = added->items[i];
        const gkd_json *content = gkd_json_get(a, "content");
        int id = json_id(gkd_json_get(a, "id")), special, normalized;
        if ((st = get_bool(a, "special", 0, where, field, &special)) != GKD_OK) break;
        if ((st = get_bool(a, "normalized", !special, where, field, &normalized)) != GKD_OK) break;
        token *t = &tok->tokens[id];
        if (t->added) {
            st = gkd_error_set(GKD_ERR_FORMAT, "%s: %s: id %d is listed twice", where, field, id);
            break;
        }
        if (t->str && (t->str_len != content->len || memcmp(t->str, content->string, t->str_len) != 0)) {
            st = gkd_error_set(GKD_ERR_FORMAT, "%s: %s: id %d is \"%s\" in model.vocab but \"%s\" here",
                               where, field, id, t->str, content->string);
            break;
        }
        /* An added token decodes to its content, whatever its vocab string would decode to. */
        free(t->bytes);
        free(t->str);
        if (!set_token(t, content->string, content->len, content->string, content->len)) {
            st = out_of_memory("loading");
            break;
        }
        t->added = 1;
        t->special = (unsigned)special;
        t->normalized = (unsigned)normalized;
        tok->added[tok->n_added++] = id;
    }
    for (int id = 0; id < tok->n_tokens && st == GKD_OK; id++) {
        const token *t = &tok->tokens[id];
        if (!t->str)
            st = gkd_error_set(GKD_ERR_FORMAT, "%s: model.vocab: id %d is missing", where, id);
        else if (no_bytes[id] && !t->added)
            st = gkd_error_set(GKD_ERR_FORMAT,
                               "%s: model.vocab: \"%s\" has a character outside the byte-level "
                               "alphabet",
                               where, t->str);
    }
    free(no_bytes);
    free(bytes);
    return st;
}

/* The vocabulary id of a merge operand, or -1. */
static int vocab_id(const gkd_tokenizer *tok, const char *s, size_t len) {
    int id = str_map_get(&tok->by_str, s, len);
    return id >= 0 && tok->tokens[id].in_vocab ? id : -1;
}

/* Appends the merge (left, right) at the next rank; `joined` is scratch. Errors name where, field and the
 * vocabulary (vocab_name). */
static gkd_status add_merge(gkd_tokenizer *tok, const char *left, size_t left_len, const char *right,
                            size_t right_len, gkd_buf *joined, const char *where, const char *field,
                            const char *vocab_name) {
    int a = vocab_id(tok, left, left_len), b = vocab_id(tok, right, right_len);
    joined->len = 0;
    gkd_buf_put(joined, left, left_len);
    gkd_buf_put(joined, right, right_len);
    if (joined->failed) return out_of_memory("loading");
    int c = vocab_id(tok, joined->data, joined->len);
    if (a < 0 || b < 0 || c < 0) {
        const char *missing = a < 0 ? left : b < 0 ? right : joined->data;
        size_t missing_len = a < 0 ? left_len : b < 0 ? right_len : joined->len;
        return gkd_error_set(GKD_ERR_FORMAT, "%s: %s: \"%.*s\" is not in %s", where, field, (int)missing_len,
                             missing, vocab_name);
    }
    tok->merges[tok->n_merges++] = (merge){a, b, c};
    return GKD_OK;
}

static gkd_status read_merges(gkd_tokenizer *tok, const gkd_json *merges, const char *where) {
    if (!merges || merges->type != GKD_JSON_ARRAY)
        return bad(where, "model.merges", "missing or not an array");
    tok->merges = malloc((merges->len + 1) * sizeof *tok->merges);
    if (!tok->merges) return out_of_memory("loading");
    gkd_buf joined = {0};
    gkd_status st = GKD_OK;
    char field[64];
    for (size_t i = 0; i < merges->len && st == GKD_OK; i++) {
        snprintf(field, sizeof field, "model.merges[%zu]", i);
        const gkd_json *m = merges->items[i];
        const char *left = NULL, *right = NULL;
        size_t left_len = 0, right_len = 0;
        if (m->type == GKD_JSON_STRING) {
            /* "a b": byte-level strings never hold a space, so the one space separates the operands. */
            const char *space = memchr(m->string, ' ', m->len);
            if (space && !memchr(space + 1, ' ', m->len - (size_t)(space + 1 - m->string))) {
                left = m->string, left_len = (size_t)(space - m->string);
                right = space + 1, right_len = m->len - left_len - 1;
            }
        } else if (m->type == GKD_JSON_ARRAY && m->len == 2 && m->items[0]->type == GKD_JSON_STRING &&
                   m->items[1]->type == GKD_JSON_STRING) {
            left = m->items[0]->string, left_len = m->items[0]->len;
            right = m->items[1]->string, right_len = m->items[1]->len;
        }
        if (!left) {
            st = bad(where, field, "neither \"left right\" nor [\"left\", \"right\"]");
            break;
        }
        st = add_merge(tok, left, left_len, right, right_len, &joined, where, field, "model.vocab");
    }
    gkd_buf_free(&joined);
    return st;
}

static gkd_status from_tree(const gkd_json *root, const char *where, gkd_tokenizer **out) {
    if (!root || root->type != GKD_JSON_OBJECT) return bad(where, "(top level)", "not an object");
    const gkd_json *normalizer = gkd_json_get(root, "normalizer");
    if (!is_null(normalizer)) return bad(where, "normalizer", "only null is supported");
    const gkd_json *decoder = gkd_json_get(root, "decoder");
    if (!is_null(decoder) && !type_is(decoder, "ByteLevel"))
        return bad(where, "decoder.type", "only ByteLevel (or null) is supported");
    const gkd_json *model = gkd_json_get(root, "model");
    int ignore_merges = 0;
    gkd_status st = check_model(model, where, &ignore_merges);
    if (st != GKD_OK) return st;
    gkd_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return out_of_memory("loading");
    tok->ignore_merges = ignore_merges;
    st = parse_pre_tokenizer(tok, gkd_json_get(root, "pre_tokenizer"), where);
    if (st == GKD_OK)
        st = read_tokens(tok, gkd_json_get(model, "vocab"), gkd_json_get(root, "added_tokens"), where);
    if (st == GKD_OK) st = index_tokens(tok, where);
    if (st == GKD_OK) st = read_merges(tok, gkd_json_get(model, "merges"), where);
    if (st == GKD_OK) st = index_merges_and_added(tok);
    if (st != GKD_OK) {
        gkd_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return GKD_OK;
}

gkd_status gkd_tokenizer_from_json(const char *text, size_t len, const char *where, gkd_tokenizer **out) {
    if (!text || !out) return gkd_error_set(GKD_ERR_ARG, "tokenizer from_json: NULL argument");
    if (!where) where = "tokenizer.json";
    gkd_json *root = NULL;
    gkd_status st = gkd_json_parse(text, len, where, &root);
    if (st == GKD_OK) st = from_tree(root, where, out);
    gkd_json_free(root);
    return st;
}

gkd_status gkd_tokenizer_load(const char *path, gkd_tokenizer **out) {
    if (!path || !out) return gkd_error_set(GKD_ERR_ARG, "tokenizer load: NULL argument");
    gkd_json *root = NULL;
    gkd_status st = gkd_json_parse_file(path, &root);
    if (st == GKD_OK) st = from_tree(root, path, out);
    gkd_json_free(root);
    return st;
}

/* ---------------------------------------------------------------------------------------------------
 * A tokenizer from vocabulary and merge arrays (GGUF metadata). The same checks as tokenizer.json:
 * dense ids, every byte present, merges of known tokens; the pre-tokenizer is a named layout. */

static void set_layout(gkd_tokenizer *tok, gkd_pretokenizer layout) {
    switch (layout) {
    case GKD_PRETOKENIZER_GPT2:
        tok->steps[tok->n_steps++] = (pre_step){STEP_BYTE_LEVEL, 1};
        break;
    case GKD_PRETOKENIZER_LLAMA3:
        tok->steps[tok->n_steps++] = (pre_step){STEP_SPLIT_LLAMA3, 0};
        tok->steps[tok->n_steps++] = (pre_step){STEP_BYTE_LEVEL, 0};
        tok->steps_in_sequence = 1;
        break;
    case GKD_PRETOKENIZER_QWEN2:
        tok->steps[tok->n_steps++] = (pre_step){STEP_SPLIT_QWEN2, 0};
        tok->steps[tok->n_steps++] = (pre_step){STEP_BYTE_LEVEL, 0};
        tok->steps_in_sequence = 1;
        break;
    case GKD_PRETOKENIZER_STARCODER:
        tok->steps[tok->n_steps++] = (pre_step){STEP_DIGITS, 1};
        tok->steps[tok->n_steps++] = (pre_step){STEP_BYTE_LEVEL, 1};
        tok->steps_in_sequence = 1;
        break;
    }
}

/* Fills token `id` from its vocabulary string s[0..len). */
static gkd_status vocab_token(gkd_tokenizer *tok, int id, const char *s, size_t len, gkd_token_kind kind,
                              unsigned char *bytes, const char *where, const char *field) {
    token *t = &tok->tokens[id];
    long n = str_to_bytes(s, len, bytes);
    if (kind == GKD_TOKEN_KIND_NORMAL) {
        if (n < 0)
            return gkd_error_set(GKD_ERR_FORMAT,
                                 "%s: %s[%d]: \"%.*s\" has a character outside the byte-level alphabet",
                                 where, field, id, (int)len, s);
        if (!set_token(t, (const char *)bytes, (size_t)n, s, len)) return out_of_memory("loading");
        t->in_vocab = 1;
        return GKD_OK;
    }
    if (len == 0)
        return gkd_error_set(GKD_ERR_FORMAT, "%s: %s[%d]: an added token is empty", where, field, id);
    if (!set_token(t, s, len, s, len)) return out_of_memory("loading");
    /* An added token written in the alphabet's self-standing characters ("<|im_end|>") is also a vocabulary
     * entry, as in the tokenizer.json files such vocabularies are converted from. */
    t->in_vocab = n == (long)len && memcmp(bytes, s, len) == 0;
    t->added = 1;
    t->special = kind == GKD_TOKEN_KIND_SPECIAL;
    t->normalized = !t->special;
    tok->added[tok->n_added++] = id;
    return GKD_OK;
}

gkd_status gkd_tokenizer_from_vocab(const gkd_tokenizer_vocab *v, const char *where, gkd_tokenizer **out) {
    if (!v || !out || v->n_tokens < 0 || v->n_merges < 0 || (!v->tokens && v->n_tokens > 0) ||
        (!v->merges && v->n_merges > 0) || v->pre_tokenizer < GKD_PRETOKENIZER_GPT2 ||
        v->pre_tokenizer > GKD_PRETOKENIZER_STARCODER)
        return gkd_error_set(GKD_ERR_ARG, "tokenizer from_vocab: bad argument");
    if (!where) where = "vocabulary";
    const char *tokens_field = v->tokens_field ? v->tokens_field : "tokens";
    const char *merges_field = v->merges_field ? v->merges_field : "merges";
    gkd_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return out_of_memory("loading");
    set_layout(tok, v->pre_tokenizer);
    tok->ignore_merges = v->ignore_merges != 0;
    tok->n_tokens = v->n_tokens;
    tok->tokens = calloc((size_t)v->n_tokens + 1, sizeof *tok->tokens);
    tok->added = malloc(((size_t)v->n_tokens + 1) * sizeof *tok->added);
    tok->merges = malloc(((size_t)v->n_merges + 1) * sizeof *tok->merges);
    size_t cap_bytes = 64;
    unsigned char *bytes = malloc(cap_bytes);
    gkd_buf joined = {0};
    gkd_status st = GKD_OK;
    if (!tok->tokens || !tok->added || !tok->merges || !bytes) st = out_of_memory("loading");
    for (int id = 0; id < v->n_tokens && st == GKD_OK; id++) {
        size_t len = v->token_lens ? v->token_lens[id] : strlen(v->tokens[id]);
        gkd_token_kind kind = v->kinds ? v->kinds[id] : GKD_TOKEN_KIND_NORMAL;
        if (kind < GKD_TOKEN_KIND_NORMAL || kind > GKD_TOKEN_KIND_ADDED)
            st = gkd_error_set(GKD_ERR_ARG, "%s: %s[%d]: unknown token kind %d", where, tokens_field, id,
                               kind);
        else if (!reserve((void **)&bytes, &cap_bytes, len + 1, 1))
            st = out_of_memory("loading");
        else
            st = vocab_token(tok, id, v->tokens[id], len, kind, bytes, where, tokens_field);
    }
    if (st == GKD_OK) st = index_tokens(tok, where);
    for (int r = 0; r < v->n_merges && st == GKD_OK; r++) {
        char field[64];
        snprintf(field, sizeof field, "%s[%d]", merges_field, r);
        const char *m = v->merges[r];
        size_t len = v->merge_lens ? v->merge_lens[r] : strlen(m);
        const char *space = memchr(m, ' ', len);
        if (!space || memchr(space + 1, ' ', len - (size_t)(space + 1 - m)))
            st = gkd_error_set(GKD_ERR_FORMAT, "%s: %s: \"%.*s\" is not \"left right\"", where, field,
                               (int)len, m);
        else
            st = add_merge(tok, m, (size_t)(space - m), space + 1, len - (size_t)(space - m) - 1, &joined,
                           where, field, tokens_field);
    }
    if (st == GKD_OK) st = index_merges_and_added(tok);
    free(bytes);
    gkd_buf_free(&joined);
    if (st != GKD_OK) {
        gkd_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return GKD_OK;
}

static void write_step(gkd_buf *b, const pre_step *s) {
    switch (s->kind) {
    case STEP_BYTE_LEVEL:
        gkd_buf_printf(b,
                       "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
                       "\"use_regex\": %s}",
                       s->flag ? "true" : "false");
        break;
    case STEP_DIGITS:
        gkd_buf_printf(b, "{\"type\": \"Digits\", \"individual_digits\": %s}", s->flag ? "true" : "false");
        break;
    case STEP_SPLIT_GPT2:
    case STEP_SPLIT_LLAMA3:
    case STEP_SPLIT_QWEN2: {
        const char *p = s->kind == STEP_SPLIT_GPT2     ? pattern_gpt2
                        : s->kind == STEP_SPLIT_LLAMA3 ? pattern_llama3
                                                       : pattern_qwen2;
        gkd_buf_puts(b, "{\"type\": \"Split\", \"pattern\": {\"Regex\": ");
        gkd_buf_json_string(b, p, strlen(p));
        gkd_buf_puts(b, "}, \"behavior\": \"Isolated\", \"invert\": false}");
        break;
    }
    }
}

/* One member per line and one vocabulary entry or merge per line, so that files diff well. */
gkd_status gkd_tokenizer_to_json(const gkd_tokenizer *tok, gkd_buf *b) {
    if (!tok || !b) return gkd_error_set(GKD_ERR_ARG, "tokenizer to_json: NULL argument");
    for (int r = 0; r < tok->n_merges; r++) {
        const token *l = &tok->tokens[tok->merges[r].left], *rt = &tok->tokens[tok->merges[r].right];
        if (memchr(l->str, ' ', l->str_len) || memchr(rt->str, ' ', rt->str_len))
            return gkd_error_set(GKD_ERR_ARG, "tokenizer to_json: merge %d has an operand with a space", r);
    }
    gkd_buf_puts(b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n"
                    "  \"added_tokens\": [");
    for (int k = 0; k < tok->n_added; k++) {
        const token *t = &tok->tokens[tok->added[k]];
        gkd_buf_printf(b, "%s\n    {\"id\": %d, \"content\": ", k ? "," : "", tok->added[k]);
        gkd_buf_json_string(b, t->bytes, t->len);
        gkd_buf_printf(b,
                       ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": %s, "
                       "\"special\": %s}",
                       t->normalized ? "true" : "false", t->special ? "true" : "false");
    }
    gkd_buf_puts(b, tok->n_added ? "\n  ],\n" : "],\n");
    gkd_buf_puts(b, "  \"normalizer\": null,\n  \"pre_tokenizer\": ");
    if (tok->steps_in_sequence) {
        gkd_buf_puts(b, "{\"type\": \"Sequence\", \"pretokenizers\": [");
        for (int k = 0; k < tok->n_steps; k++) {
            if (k) gkd_buf_puts(b, ", ");
            write_step(b, &tok->steps[k]);
        }
        gkd_buf_puts(b, "]}");
    } else {
        write_step(b, &tok->steps[0]);
    }
    gkd_buf_puts(
        b, ",\n  \"post_processor\": null,\n"
           "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
           "\"use_regex\": true},\n");
    gkd_buf_printf(
        b,
        "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
        "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
        "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": %s,\n"
        "    \"vocab\": {",
        tok->ignore_merges ? "true" : "false");
    int first = 1;
    for (int id = 0; id < tok->n_tokens; id++) {
        const token *t = &tok->tokens[id];
        if (!t->in_vocab) continue;
        gkd_buf_puts(b, first ? "\n      " : ",\n      ");
        gkd_buf_json_string(b, t->str, t->str_len);
        gkd_buf_printf(b, ": %d", id);
        first = 0;
    }
    gkd_buf_puts(b, "\n    },\n    \"merges\": [");
    gkd_buf joined = {0};
    for (int r = 0; r < tok->n_merges; r++) {
        const token *l = &tok->tokens[tok->merges[r].left], *rt = &tok->tokens[tok->merges[r].right];
        joined.len = 0;
        gkd_buf_put(&joined, l->str, l->str_len);
        gkd_buf_put(&joined, " ", 1);
        gkd_buf_put(&joined, rt->str, rt->str_len);
        gkd_buf_puts(b, r ? ",\n      " : "\n      ");
        if (!joined.failed) gkd_buf_json_string(b, joined.data, joined.len);
        b->failed |= joined.failed;
    }
    gkd_buf_free(&joined);
    gkd_buf_puts(b, tok->n_merges ? "\n    ]\n  }\n}\n" : "]\n  }\n}\n");
    return b->failed ? out_of_memory("writing tokenizer.json") : GKD_OK;
}

gkd_status gkd_tokenizer_save(const gkd_tokenizer *tok, const char *path) {
    if (!tok || !path) return gkd_error_set(GKD_ERR_ARG, "tokenizer save: NULL argument");
    gkd_buf b = {0};
    gkd_status st = gkd_tokenizer_to_json(tok, &b);
    if (st != GKD_OK) {
        gkd_buf_free(&b);
        return st;
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        gkd_buf_free(&b);
        return gkd_error_set(GKD_ERR_IO, "%s: cannot open for writing", path);
    }
    int ok = fwrite(b.data, 1, b.len, f) == b.len;
    ok = (fclose(f) == 0) && ok;
    gkd_buf_free(&b);
    return ok ? GKD_OK : gkd_error_set(GKD_ERR_IO, "%s: write failed", path);
}

/* ---------------------------------------------------------------------------------------------------
 * Lookups. */

int gkd_tokenizer_vocab_size(const gkd_tokenizer *tok) {
    return tok ? tok->n_tokens : 0;
}

int gkd_tokenizer_token_id(const gkd_tokenizer *tok, const char *token) {
    if (!tok || !token) return -1;
    return str_map_get(&tok->by_str, token, strlen(token));
}

const char *gkd_tokenizer_token_str(const gkd_tokenizer *tok, int id) {
    if (!tok || id < 0 || id >= tok->n_tokens) return NULL;
    return tok->tokens[id].str;
}

const char *gkd_tokenizer_token_bytes(const gkd_tokenizer *tok, int id, size_t *len) {
    if (!tok || id < 0 || id >= tok->n_tokens) return NULL;
    if (len) *len = tok->tokens[id].len;
    return tok->tokens[id].bytes;
}

int gkd_tokenizer_is_special(const gkd_tokenizer *tok, int id) {
    if (!tok || id < 0 || id >= tok->n_tokens) return 0;
    return tok->tokens[id].special;
}

int gkd_tokenizer_role_id(const gkd_tokenizer *tok, gkd_token_role role) {
    if (!tok || role < 0 || role >= GKD_TOKEN_ROLE_COUNT) return -1;
    return tok->role[role];
}

gkd_status gkd_tokenizer_set_role(gkd_tokenizer *tok, gkd_token_role role, int id) {
    if (!tok || role < 0 || role >= GKD_TOKEN_ROLE_COUNT)
        return gkd_error_set(GKD_ERR_ARG, "tokenizer set_role: bad tokenizer or role");
    if (id < -1 || id >= tok->n_tokens)
        return gkd_error_set(GKD_ERR_ARG, "tokenizer set_role: id %d is outside the vocabulary (%d)", id,
                             tok->n_tokens);
    tok->role[role] = id;
    return GKD_OK;
}
