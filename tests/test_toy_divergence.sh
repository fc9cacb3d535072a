# docs/architecture.md's recipe "add a divergence" holds: tests/toy_divergence/add.patch adds a toy
# divergence (toy_jsd_sum = KL(P||M) + KL(Q||M), M = (P + Q) / 2) by touching at most three files, all in
# rl/. The test copies the tree, applies the patch, builds the library layers (CPU only) and runs
# tests/toy_divergence/check.c against them: the toy is found by name and its value, gradient and top-k
# path match a reference written in the check. The unpatched gkd must not know the name (so the check
# can fail). Slow: it builds the library once (about a minute on one core).
# ctest-labels: cpu;slow
. "$(dirname "$0")/lib.sh"
patch_file="$src/tests/toy_divergence/add.patch"
command -v patch > /dev/null || { echo "SKIPPED: no patch(1)"; exit 77; }

files=$(grep -c '^+++ ' "$patch_file")
outside=$(grep '^+++ ' "$patch_file" | grep -v '^+++ b/rl/' || true)
check "the patch touches $files files (at most 3)" test "$files" -le 3
check "the patch touches only rl/ ($outside)" test -z "$outside"

cat > unknown.lua <<'LUA'
local ok, err = pcall(gkd.divergence, "toy_jsd_sum")
assert(not ok and tostring(err):find("unknown divergence"), "the unpatched gkd knows toy_jsd_sum: " .. tostring(err))
LUA
check "the unpatched gkd refuses toy_jsd_sum" "$bin" run unknown.lua

mkdir tree
for d in CMakeLists.txt cmake core rl reward bindings cli scripts-lua tests; do cp -r "$src/$d" tree/; done
check "the patch applies" patch -s -d tree -p1 -i "$patch_file"
if cmake -S tree -B tree/build -DCMAKE_BUILD_TYPE=Release -DGKD_CUDA=OFF > cmake.log 2>&1 &&
   cmake --build tree/build --target gkd_rl -j"${GKD_TEST_JOBS:-2}" > build.log 2>&1; then
  lib=tree/build
  check "the check builds" cc -std=c11 -O1 -D_GNU_SOURCE -Itree "$src/tests/toy_divergence/check.c" -o check \
    $lib/libgkd_rl.a $lib/libgkd_reward.a $lib/libgkd_format.a $lib/libgkd_text.a $lib/libgkd_tensor.a \
    $lib/libgkd_store.a $lib/libgkd_base.a -fopenmp -lopenblas -lsqlite3 -lsleef -lm
  check "the toy divergence is right" ./check
else
  tail -20 cmake.log build.log
  check "the patched tree builds" false
fi
[ "$fails" -eq 0 ]
