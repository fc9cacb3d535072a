#!/usr/bin/env bash
# ctest-labels: cpu
# --sandbox (docs/trust.md): a sandboxed script gets a clear error for what it may not do (run programs,
# open files, load C modules or binary chunks, write files through gkd outside the current directory,
# finalizers) and for running forever or filling memory; a sandboxed run and a sandboxed sweep with
# workers still train, the workers are sandboxed too, and gkd resume keeps a run sandboxed.
set -uo pipefail
bin="${GKD_BIN:-}"
[ -x "$bin" ] || { echo "SKIPPED: no gkd binary (GKD_BIN)"; exit 77; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/work"
cd "$tmp/work"
export OMP_NUM_THREADS=1
fails=0
check() {
  local what="$1"; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what" >&2; fails=$((fails + 1)); fi
}
# refused NAME CODE PATTERN [FLAGS...]: the sandboxed code fails (exit 1) with PATTERN in its message
refused() {
  local name="$1" code="$2" pattern="$3"; shift 3
  timeout 120 "$bin" run --sandbox "$@" -e "$code" >"out-$name.txt" 2>&1; local rc=$?
  check "$name: refused with exit 1 (got $rc)" test "$rc" -eq 1
  check "$name: the message says so" grep -qF "$pattern" "out-$name.txt"
}

refused os.execute 'os.execute("touch pwned")' "os.execute is not available in --sandbox"
check "os.execute: nothing ran" test ! -e pwned
refused io.open 'io.open("written", "w")' "io.open is not available in --sandbox"
check "io.open: no file" test ! -e written
refused os.getenv 'print(os.getenv("HOME"))' "os.getenv is not available in --sandbox"
refused dofile 'dofile("/etc/passwd")' "dofile is not available in --sandbox"
refused package.loadlib 'package.loadlib("libc.so.6", "system")' "package is not available in --sandbox"
refused require 'require "lfs"' "require 'lfs': modules cannot be loaded in --sandbox"
refused debug 'debug.getregistry()' "debug is not available in --sandbox"
refused binary-load 'assert(load(string.dump(function() end), "x", "b"))' "binary chunks are refused in --sandbox"
refused binary-load2 'assert(load(string.dump(function() end)))' "attempt to load a binary chunk"
refused spawn 'gkd.sys.spawn({"touch", "pwned"})' "gkd.sys.spawn is not available in --sandbox"
check "spawn: nothing ran" test ! -e pwned
refused setenv 'gkd.sys.setenv("LD_PRELOAD", "x")' "gkd.sys.setenv is not available in --sandbox"
refused model:save 'gkd.model.new{layers = 1, dim = 32, heads = 4, vocab = 300}:save("../m.safetensors")' \
  "model:save is not available in --sandbox"
check "model:save: no file" test ! -e ../m.safetensors
refused store-outside 'assert(gkd.store.open("../outside.db"))' "'../outside.db' is outside the current directory"
refused store-absolute "assert(gkd.store.open('$tmp/abs.db'))" "is outside the current directory"
check "store: no file outside" test ! -e ../outside.db -a ! -e "$tmp/abs.db"
refused gc 'setmetatable({}, {__gc = function() while true do end end})' "__gc metamethods are not available in --sandbox"
refused metatable 'getmetatable(gkd.model.new{layers = 1, dim = 32, heads = 4, vocab = 300}).methods.save = print' \
  "attempt to index a nil value"
refused loop 'while true do end' "instruction limit exceeded: the script ran more than 1000000000 Lua instructions"
refused pcall-loop 'while true do pcall(function() while true do end end) end' "instruction limit exceeded" \
  --instruction-limit 10000000
refused memory 'local t = {} for i = 1, 1e9 do t[i] = ("x"):rep(64) .. i end' \
  "more than its Lua memory limit of 64 MiB (--memory-limit)" --memory-limit 64

# what stays: the gkd module, strings, os.time, a text load, a run writing below the current directory
cat >run.lua <<'LUA'
local gkd = require "gkd"
assert(not pcall(function() return os.getenv end), "os.getenv reachable")
assert(load("return 1 + 1")() == 2 and ("x"):upper() == "X" and os.time() > 0)
local task = assert(gkd.task.summarize{max_examples = 30})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed)
  return gkd.model.new{layers = 1, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 96, seed = seed}
end
local cfg = {name = arg[1], task = task, teacher = model(7), student = model(1), steps = tonumber(arg[2]) or 4,
  batch = 4, max_new_tokens = 4, max_prompt = 64, eval = {examples = 2}, checkpoint = {every = 2}, quiet = true,
  reward = function(s) if arg[1] == "spin" then while true do end end return #s.output end, alpha = 0.5, group_size = 2}
if arg[3] then cfg.checkpoint = {dir = arg[3]} end
if arg[4] then cfg.db = arg[4] end
local r = gkd.run(cfg)
print("trained " .. r.step)
LUA
timeout 120 "$bin" run --sandbox run.lua ok >out-run.txt 2>&1; rc=$?
check "a sandboxed run trains (exit $rc)" test "$rc" -eq 0 -a -e checkpoints/ok/step-00000004/model.safetensors
timeout 120 "$bin" run --sandbox run.lua out 4 "$tmp/ck" >out-ckdir.txt 2>&1; rc=$?
check "a checkpoint folder outside is refused (exit $rc)" test "$rc" -eq 1 -a ! -e "$tmp/ck"
check "  naming it" grep -q "checkpoint folder '$tmp/ck' is outside the current directory" out-ckdir.txt
timeout 120 "$bin" run --sandbox run.lua outdb 4 "" "../runs.db" >out-db.txt 2>&1; rc=$?
check "a db outside is refused (exit $rc)" test "$rc" -eq 1 -a ! -e ../runs.db
timeout 120 "$bin" run --sandbox run.lua spin >out-spin.txt 2>&1; rc=$?
check "a looping reward is stopped by the sandbox's callback limit (exit $rc)" test "$rc" -eq 1
check "  naming the reward and the limit" grep -q "reward 'reward': Lua function: instruction limit exceeded: more than 100000000" out-spin.txt

# a sandboxed run stopped by SIGTERM is resumed sandboxed
cat >resume.lua <<'LUA'
local sandboxed = not pcall(function() return io.open end)
print("sandboxed " .. tostring(sandboxed))
local task = assert(gkd.task.summarize{max_examples = 30})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed) return gkd.model.new{layers = 1, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 96, seed = seed} end
gkd.run{name = "long", task = task, teacher = model(7), student = model(1), steps = 400, batch = 4, max_new_tokens = 4,
  max_prompt = 64, eval = false, checkpoint = {every = 1}, quiet = true}
LUA
"$bin" run --sandbox --memory-limit 512 resume.lua >out-long.txt 2>&1 &
pid=$!
for _ in $(seq 1 600); do [ -n "$(ls checkpoints/long 2>/dev/null)" ] && break; sleep 0.1; done
kill -TERM "$pid"
wait "$pid"; rc=$?
check "the sandboxed run stops on SIGTERM with exit 3 (got $rc)" test "$rc" -eq 3
check "  it ran sandboxed" grep -q "sandboxed true" out-long.txt
timeout 300 "$bin" resume long >out-resume.txt 2>&1; rc=$?
check "gkd resume finishes it (exit $rc)" test "$rc" -eq 0
check "  sandboxed again" grep -q "sandboxed true" out-resume.txt

# a sandboxed sweep: its workers are sandboxed
cat >sweep.lua <<'LUA'
local task = assert(gkd.task.summarize{max_examples = 30})
local tok = gkd.tokenizer.train{task = task, vocab = 300}
local function model(seed) return gkd.model.new{layers = 1, dim = 32, heads = 4, tokenizer = tok, max_seq_len = 96, seed = seed} end
return {name = "sb", grid = {lambda = {0, 1}}, workers = 2, quiet = true, run = function(p)
  assert(not pcall(function() return os.execute end), "a worker is not sandboxed")
  return {task = task, teacher = model(7), student = model(p.seed), steps = 2, batch = 4, max_new_tokens = 4,
    max_prompt = 64, eval = {examples = 2}}
end}
LUA
timeout 300 "$bin" sweep --sandbox sweep.lua >out-sweep.txt 2>&1; rc=$?
check "a sandboxed sweep with 2 workers finishes (exit $rc)" test "$rc" -eq 0
check "  both runs" grep -q "2 runs: 2 finished" out-sweep.txt

[ "$fails" -eq 0 ] || for f in out-*.txt; do echo "--- $f"; tail -4 "$f"; done
[ "$fails" -eq 0 ]
