#!/usr/bin/env python3
"""Rebuilds gkd's Debian-derived data sets (docs/data.md) from the Translation-en/-de/-it indexes of a
Debian mirror, or from a folder holding those files.

Usage:
  build.py [--out DIR] [--langs de,it] [--mirror URL] [--suite SUITE] [--component COMP] [--download-to DIR]
  build.py [--out DIR] [--langs de,it] --from DIR

Writes DIR/debdesc.jsonl.xz and DIR/ddtp-en-LANG.jsonl.xz for each LANG (DIR defaults to data/ at the
repository root). Python 3 standard library only; a .lz4 input (apt's own lists) also needs the `lz4`
command (apt-get install lz4).

Rules:
- The same Translation files give byte-identical outputs: rows are sorted, JSON is written by json.dumps
  (ensure_ascii=False) and compressed with xz preset 9, as the shipped copies were.
- Downloads are checked against the size and SHA256 that the suite's Release file gives; the Release file's
  signature is not checked (that needs gpgv and the archive keyring).
- Malformed input stops the build with FILE:LINE: message and exit status 1; nothing is left half-written.
- Text conventions, those of the shipped copies: a long description is split into paragraphs at its " ."
  lines; the continuation marker (the first space or tab) is dropped, lines are joined by a space, runs of
  spaces and tabs become one space, and other whitespace (no-break spaces) is kept. Two deliberate
  differences (docs/data.md): " ." with trailing spaces also separates paragraphs, and lines whose text
  begins with a tab are kept.
"""
import argparse
import bz2
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

# Preferred first: xz is what bookworm offers for Translation-en, bz2 for the others.
COMPRESSIONS = ("xz", "bz2", "gz", "")
LOCAL_SUFFIXES = ("", ".xz", ".bz2", ".gz", ".lz4")


class InputError(Exception):
    pass


def collapse(text):
    return re.sub(r"[ \t]+", " ", text).strip(" ")


class Description:
    """One Translation record: `short` the one-line description, `paragraphs` the long one's paragraphs
    (collapsed, possibly empty strings), `indented` whether its first text line is preformatted."""

    def __init__(self, package, md5, short, long_lines):
        self.package = package
        self.md5 = md5
        self.short = collapse(short)
        groups = [[]]
        for line in long_lines:
            if line.rstrip(" \t") == ".":
                groups.append([])
            else:
                groups[-1].append(line)
        self.paragraphs = [collapse(" ".join(g)) for g in groups]
        self.document = " ".join(p for p in self.paragraphs if p)
        text_lines = [line for g in groups for line in g]
        self.indented = bool(text_lines) and text_lines[0][:1] in (" ", "\t")


def parse_translation(name, data, lang):
    """Parses the bytes of a Translation-LANG file (deb822 records: Package, Description-md5,
    Description-LANG) into a list of Description, in file order."""
    want = ("Package", "Description-md5", "Description-" + lang)
    records = []
    fields, long_lines, start, last = None, None, 0, None

    def finish():
        for field in want:
            if field not in fields:
                raise InputError(f"{name}:{start}: record has no {field} field")
        records.append(Description(fields["Package"], fields["Description-md5"], fields[want[2]], long_lines))

    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{name}:{number}: not UTF-8 ({e.reason} at byte {e.start})") from None
        if line.endswith("\r"):
            raise InputError(f"{name}:{number}: CR LF line ending")
        if line.strip(" \t") == "":
            if fields is not None:
                finish()
            fields, last = None, None
            continue
        if line[0] in " \t":
            if last is None:
                raise InputError(f"{name}:{number}: continuation line outside a field")
            if last == want[2]:
                long_lines.append(line[1:])
            continue
        match = re.match(r"([!-9;-~]+):(.*)$", line)
        if not match:
            raise InputError(f"{name}:{number}: expected 'Field: value', got {line[:40]!r}")
        field, value = match.group(1), match.group(2).strip(" \t")
        if fields is None:
            fields, long_lines, start = {}, [], number
        if field in fields:
            raise InputError(f"{name}:{number}: field {field} repeated in the record that starts at line {start}")
        fields[field] = value
        last = field
    if fields is not None:
        finish()
    return records


def build_debdesc(en):
    """Rows package, summary, document; one per distinct document (the first package in file order keeps
    it), empty documents and summaries left out. Sorted by document, except that descriptions whose first
    line is preformatted come first, as in the shipped copy."""
    rows, seen = [], set()
    for d in en:
        if not d.document or not d.short or d.document in seen:
            continue
        seen.add(d.document)
        rows.append((not d.indented, d.document, {"package": d.package, "summary": d.short, "document": d.document}))
    rows.sort(key=lambda r: r[:2])
    return [r[2] for r in rows]


def build_ddtp(en, tr, lang):
    """Rows kind, en, LANG: joined on Description-md5; the short descriptions as `short`, and the long
    ones paragraph by paragraph as `para` where both have as many paragraphs. Pairs with an empty side
    are left out; distinct pairs, sorted by (kind, en, LANG)."""
    by_md5 = {}
    for d in en:
        by_md5.setdefault(d.md5, d)
    pairs = set()
    for t in tr:
        e = by_md5.get(t.md5)
        if e is None:
            continue
        if e.short and t.short:
            pairs.add(("short", e.short, t.short))
        if len(e.paragraphs) == len(t.paragraphs):
            pairs.update(("para", a, b) for a, b in zip(e.paragraphs, t.paragraphs) if a and b)
    return [{"kind": k, "en": a, lang: b} for k, a, b in sorted(pairs)]


def decompress(path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        if path.endswith(".xz"):
            return lzma.decompress(data)
        if path.endswith(".bz2"):
            return bz2.decompress(data)
        if path.endswith(".gz"):
            return gzip.decompress(data)
    except (lzma.LZMAError, OSError, EOFError, ValueError) as e:
        raise InputError(f"{path}: cannot decompress: {e}") from None
    if path.endswith(".lz4"):
        if not shutil.which("lz4"):
            raise InputError(f"{path}: .lz4 input needs the lz4 command (apt-get install lz4)")
        run = subprocess.run(["lz4", "-dc", path], capture_output=True)
        if run.returncode != 0:
            raise InputError(f"{path}: cannot decompress: {run.stderr.decode(errors='replace').strip()}")
        return run.stdout
    return data


def find_local(folder, lang):
    """Translation-LANG[.xz|.bz2|.gz|.lz4] in folder, also under apt's list names (..._Translation-LANG.lz4)."""
    base = "Translation-" + lang
    found = sorted(n for n in os.listdir(folder)
                   if any(n == base + s or n.endswith("_" + base + s) for s in LOCAL_SUFFIXES))
    if not found:
        raise InputError(f"{folder}: no {base} file (.xz, .bz2, .gz, .lz4 or uncompressed)")
    if len(found) > 1:
        raise InputError(f"{folder}: more than one {base} file: {', '.join(found)}")
    return os.path.join(folder, found[0])


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.read()
    except (urllib.error.URLError, OSError) as e:
        raise InputError(f"{url}: {e}") from None


def release_digests(release, url):
    """{path: (size, sha256)} from the SHA256 section of a Release file."""
    digests, in_sha256 = {}, False
    for line in release.decode("utf-8", "replace").split("\n"):
        if line.startswith("SHA256:"):
            in_sha256 = True
        elif in_sha256 and line.startswith(" "):
            parts = line.split()
            if len(parts) == 3:
                digests[parts[2]] = (int(parts[1]), parts[0])
        else:
            in_sha256 = False
    if not digests:
        raise InputError(f"{url}: no SHA256 section")
    return digests


def download(mirror, suite, component, langs, dest):
    """Fetches the suite's Release and each Translation file (the first compression the Release lists, in
    COMPRESSIONS order) into dest, checking size and SHA256. Returns {lang: path}."""
    base = f"{mirror.rstrip('/')}/dists/{suite}"
    release = fetch(base + "/Release")
    with open(os.path.join(dest, "Release"), "wb") as f:
        f.write(release)
    info = {k: v.strip() for k, _, v in (l.partition(":") for l in release.decode("utf-8", "replace").split("\n")
                                          if l[:1] not in ("", " "))}
    print(f"{base}: {info.get('Origin', '?')} {info.get('Version', '?')} ({info.get('Suite', '?')}), "
          f"Release dated {info.get('Date', '?')}", file=sys.stderr)
    digests = release_digests(release, base + "/Release")
    paths = {}
    for lang in langs:
        stem = f"{component}/i18n/Translation-{lang}"
        name = next((stem + ("." + c if c else "") for c in COMPRESSIONS if stem + ("." + c if c else "") in digests),
                    None)
        if name is None:
            raise InputError(f"{base}/Release: lists no {stem} file")
        data = fetch(f"{base}/{name}")
        size, sha256 = digests[name]
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            raise InputError(f"{base}/{name}: size or SHA256 differs from the Release file's")
        path = os.path.join(dest, os.path.basename(name))
        with open(path, "wb") as f:
            f.write(data)
        print(f"fetched {base}/{name} ({size} bytes)", file=sys.stderr)
        paths[lang] = path
    return paths


def write_jsonl_xz(path, rows):
    """Writes path atomically (a temporary file beside it, then renamed)."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes it 0600; give it an ordinary file's mode
        with os.fdopen(fd, "wb") as f:
            f.write(lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=9))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(root, "data"), help="output folder (default: data/ at the repository root)")
    ap.add_argument("--from", dest="source", metavar="DIR", help="read Translation-{en,de,it} files from DIR, offline")
    ap.add_argument("--langs", default="de,it", help="translations to pair with English (default: %(default)s)")
    ap.add_argument("--mirror", default="https://deb.debian.org/debian", help="Debian mirror (default: %(default)s)")
    ap.add_argument("--suite", default="bookworm", help="default: %(default)s")
    ap.add_argument("--component", default="main", help="default: %(default)s")
    ap.add_argument("--download-to", metavar="DIR", help="keep the downloaded files in DIR (for a later --from DIR)")
    args = ap.parse_args(argv)
    langs = ["en"] + [lang for lang in args.langs.split(",") if lang and lang != "en"]
    bad = [lang for lang in langs if not re.fullmatch(r"[a-z]{2,3}(_[A-Z]{2})?", lang)]
    if bad:
        ap.error(f"--langs: {bad[0]!r} is not a language code like de or pt_BR")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.source:
                paths = {lang: find_local(args.source, lang) for lang in langs}
            else:
                dest = args.download_to or tmp
                os.makedirs(dest, exist_ok=True)
                paths = download(args.mirror, args.suite, args.component, langs, dest)
            parsed = {lang: parse_translation(paths[lang], decompress(paths[lang]), lang) for lang in langs}
        os.makedirs(args.out, exist_ok=True)
        outputs = [("debdesc.jsonl.xz", build_debdesc(parsed["en"]))]
        outputs += [(f"ddtp-en-{lang}.jsonl.xz", build_ddtp(parsed["en"], parsed[lang], lang)) for lang in langs[1:]]
        for name, rows in outputs:
            write_jsonl_xz(os.path.join(args.out, name), rows)
            print(f"{os.path.join(args.out, name)}\t{len(rows)} lines")
    except InputError as e:
        print(f"build.py: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"build.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
