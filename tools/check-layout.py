#!/usr/bin/env python3
"""Issue 17's size limits, checked on the tracked files of a checkout: no source file outside tests/ over
1,000 lines, and no C/CUDA or Lua function over 150 lines. Prints each file or function over its limit
and exits 1 if there is one.

  tools/check-layout.py [REPO]      (default: the checkout this file is in)

Functions are found by layout, which the code follows throughout (clang-format for C): a C function
opens with a line at column 0 that ends in "{" (a signature) or is "{" alone, and ends at the next "}"
at column 0; a Lua function opens with a `function` line (named, local or assigned) and ends at the
`end` with the same indentation. Data tables and macros are not functions and are not measured."""
import os
import re
import subprocess
import sys

FILE_LIMIT = 1000
FUNCTION_LIMIT = 150
SOURCE = re.compile(r"\.(c|h|cu|cuh|lua|py|sh|cmake)$|(^|/)CMakeLists\.txt$")
C_SOURCE = re.compile(r"\.(c|h|cu|cuh)$")
C_OPEN = re.compile(r"^[A-Za-z_].*\)\s*(\{\s*)?$")
LUA_OPEN = re.compile(r"^(\s*)((local\s+)?function\b|(local\s+)?[\w.:\[\]\"']+\s*=\s*function\b)")


def c_functions(lines):
    start = None
    for i, line in enumerate(lines):
        if start is None:
            if line.startswith("{") or (C_OPEN.match(line) and line.rstrip().endswith("{")):
                start = i
            elif C_OPEN.match(line) and i + 1 < len(lines) and lines[i + 1].startswith("{"):
                start = i
        elif line.startswith("}"):
            yield start, i
            start = None


def lua_functions(lines):
    open_at = []  # (line, indent) of the functions open at this point
    for i, line in enumerate(lines):
        m = LUA_OPEN.match(line)
        if m and not re.search(r"\bend\b[\s,)]*$", line):
            open_at.append((i, len(m.group(1))))
            continue
        indent = len(line) - len(line.lstrip())
        if open_at and re.match(r"^\s*end\b", line) and indent == open_at[-1][1]:
            yield open_at.pop()[0], i


def main():
    repo = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    files = subprocess.run(["git", "-C", repo, "ls-files"], capture_output=True, text=True, check=True).stdout.split("\n")
    problems = 0
    for path in files:
        if not path or path.startswith("tests/") or not SOURCE.search(path):
            continue
        full = os.path.join(repo, path)
        if not os.path.isfile(full):
            continue
        lines = open(full, encoding="utf-8", errors="replace").read().split("\n")
        n = len(lines) - (1 if lines and lines[-1] == "" else 0)
        if n > FILE_LIMIT:
            print(f"{path}: {n} lines (limit {FILE_LIMIT})")
            problems += 1
        finder = c_functions if C_SOURCE.search(path) else lua_functions if path.endswith(".lua") else None
        for a, b in finder(lines) if finder else ():
            if b - a + 1 > FUNCTION_LIMIT:
                print(f"{path}:{a + 1}: function of {b - a + 1} lines (limit {FUNCTION_LIMIT}): {lines[a].strip()[:60]}")
                problems += 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
