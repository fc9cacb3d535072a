#!/usr/bin/env python3
"""What a region of a screenshot holds, for tests/test_report_html.sh: the share of pixels that are not
near-white, and for each colour asked for, how many pixels lie within 40 per channel of it.
Usage: png_region.py FILE.png X Y W H [#rrggbb ...]   prints "nonwhite F" then "colour #rrggbb N" lines.
Rules: the standard library only (zlib), so the test runs wherever python3 does; 8-bit RGB or RGBA,
non-interlaced PNGs (what Chromium writes); anything else is an error, not a guess. Only the rows down
to the region's bottom are decoded."""
import struct
import sys
import zlib


def read_png(path, max_rows):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, ctype, _, _, interlace = header
    if depth != 8 or ctype not in (2, 6) or interlace:
        sys.exit(f"{path}: depth {depth}, colour type {ctype}, interlace {interlace}: not handled")
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompressobj().decompress(b"".join(idat), (width * bpp + 1) * min(height, max_rows))
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(min(height, max_rows)):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 255
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        elif f != 0:
            sys.exit(f"{path}: row {y}: filter {f}")
        rows.append(line)
        prev = line
    return width, bpp, rows


def main():
    path, x, y, w, h = sys.argv[1], *map(int, sys.argv[2:6])
    colours = [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in sys.argv[6:]]
    width, bpp, rows = read_png(path, y + h)
    nonwhite, total, hits = 0, 0, [0] * len(colours)
    for row in rows[y:y + h]:
        for px in range(max(x, 0), min(x + w, width)):
            r, g, b = row[px * bpp:px * bpp + 3]
            total += 1
            nonwhite += min(r, g, b) < 230
            for k, (cr, cg, cb) in enumerate(colours):
                hits[k] += abs(r - cr) <= 40 and abs(g - cg) <= 40 and abs(b - cb) <= 40
    print(f"nonwhite {nonwhite / total if total else 0:.4f}")
    for c, n in zip(sys.argv[6:], hits):
        print(f"colour {c} {n}")


if __name__ == "__main__":
    main()
