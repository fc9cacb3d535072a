#!/usr/bin/env bash
# Builds gkd with the CUDA backend on this machine (which needs nvcc, not a GPU) and packs what a bare GPU
# machine needs to run the CUDA tests and the benchmark into gpu-bundle/ (git-ignored): the gkd binary,
# the test executables, the shared libraries they load that are neither CUDA's nor libc's, the list of
# tests labelled cuda (cuda-tests.txt), bench_torch.py, gpu-report.py, and run-gpu-tests.sh (one device
# command: tests, benchmarks against PyTorch, then benchmarks-gpu.md, a summary ready to paste). The GPU machine brings its own CUDA 13 runtime (libcudart, libcublas); it has no
# package manager and no network, so everything else travels. The bundle must stay under 64 MiB.
# Usage: tools/gpu-bundle.sh [build-dir]   (default build-gpu-bundle)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-gpu-bundle}
out=$root/gpu-bundle
jobs=${GKD_JOBS:-2}

# GKD_NATIVE=OFF: the GPU machine's CPU may lack this one's instruction set extensions. GKD_MPI=OFF (and so
# no NCCL, 208 MiB) and no oneDNN (38 MiB): neither is used by the CUDA tests or the benchmarks here, and
# with them the bundle cannot travel. The bundle's gkd therefore refuses mpirun and multiplies bf16 rows on
# the CPU by the portable path; the CPU build on the developer's machine keeps both.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGKD_CUDA=ON -DGKD_NATIVE=OFF -DGKD_MPI=OFF \
  -DGKD_DNNL=OFF >/dev/null
cmake --build "$build" -j"$jobs"

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/lib-fallback"
# The tests `ctest -L cuda` would run, by name (tests/cuda/*.c and any other C test labelled cuda), found
# by ctest itself so that new ones travel without edits here. Only they and gkd go: the CPU tests would
# push the bundle past its size limit and run on any machine anyway.
ctest --test-dir "$build" -N -L cuda | sed -n 's/^ *Test *#[0-9]*: *//p' >"$out/cuda-tests.txt"
[ -s "$out/cuda-tests.txt" ] || { echo "no test labelled cuda in $build" >&2; exit 1; }
bins=()
[ -x "$build/gkd" ] && bins+=("$build/gkd")
while read -r name; do
  if [ -x "$build/test_$name" ]; then
    bins+=("$build/test_$name")
  else
    echo "test $name (labelled cuda) has no executable test_$name in $build: not bundled" >&2
  fi
done <"$out/cuda-tests.txt"
for b in "${bins[@]}"; do
  cp "$b" "$out/bin/"
  strip --strip-unneeded "$out/bin/$(basename "$b")" 2>/dev/null || true
done

# Libraries by what ldd resolves: CUDA's come from the GPU machine, libc's family is everywhere. libstdc++
# and libgcc_s go to lib-fallback/, used only if the GPU machine lacks them: a bundled older libstdc++
# placed first could break the machine's own (newer) CUDA libraries.
declare -A seen=()
for b in "${bins[@]}"; do
  while read -r name arrow path _; do
    [ "$arrow" = "=>" ] && [ -f "$path" ] || continue
    [ -n "${seen[$name]:-}" ] && continue
    seen[$name]=1
    case "$name" in
      libcuda.so* | libcudart* | libcublas* | libcurand* | libnvidia* | libnvJitLink*) ;;
      libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | ld-linux*) ;;
      libstdc++* | libgcc_s*) cp -L "$path" "$out/lib-fallback/$name" ;;
      *) cp -L "$path" "$out/lib/$name" ;;
    esac
  done < <(ldd "$b")
done

# The libraries travel gzipped (OpenBLAS alone is 35 MiB, 10 MiB packed): run-gpu-tests.sh unpacks them.
tar -C "$out" -czf "$out/libs.tar.gz" lib lib-fallback
rm -rf "$out/lib" "$out/lib-fallback"

cp "$root/tools/bench_torch.py" "$root/tools/gpu-report.py" "$out/"

cat >"$out/run-gpu-tests.sh" <<'EOF'
#!/usr/bin/env bash
# Everything one GPU session should record, in one device command of at most 10 minutes: the CUDA tests
# (the list ctest -L cuda gives, cuda-tests.txt), then gkd against PyTorch at issue 3's shapes, then the
# small `gkd bench` shapes, then TF32 variants and gkd's bf16 one, while nvidia-smi samples device
# memory. Ends with benchmarks-gpu.md, a ready-to-paste summary written by gpu-report.py, summary.txt
# (the steps), machine.txt, and results.tgz holding every file (the loose logs are removed unless
# GKD_GPU_KEEP_LOGS=1: the device tool returns at most 8 files).
# Usage: gpu-bundle/run-gpu-tests.sh [results-dir]   (default: ./gpu-results)
# GKD_GPU_BUDGET_S (default 540): seconds for the whole run; each step's time limit shrinks to fit it, and
# steps that no longer fit are recorded as not run. Exits non-zero if a CUDA test failed or was skipped.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
results=${1:-$PWD/gpu-results}
mkdir -p "$results"
budget=${GKD_GPU_BUDGET_S:-540}
t_start=$(date +%s)
# the libraries travel packed (gpu-bundle.sh); python's tarfile where tar cannot gunzip
if [ ! -d "$here/lib" ]; then
  tar -C "$here" -xzf "$here/libs.tar.gz" 2>/dev/null ||
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$here/libs.tar.gz" "$here"
fi
cuda_dirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/lib; do
  [ -d "$d" ] && cuda_dirs="$cuda_dirs:$d"
done
export LD_LIBRARY_PATH="$here/lib${cuda_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# CUDA elsewhere (another prefix, pip's nvidia-* wheels): look for the runtime and cuBLAS by name.
probe=$(ls "$here"/bin/test_cuda_* 2>/dev/null | head -1)
if [ -n "$probe" ] && ldd "$probe" | grep -qE 'lib(cudart|cublas|curand).*not found'; then
  for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10; do
    found=$(find /usr /opt -maxdepth 8 -name "$lib" 2>/dev/null | head -1)
    [ -n "$found" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "$found")"
  done
fi
if [ -n "$probe" ] && ldd "$probe" | grep -qE 'lib(stdc\+\+|gcc_s).*not found'; then
  export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$here/lib-fallback"
fi

{
  echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
  echo "host: $(hostname)"
  echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "cores: $(nproc)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv,noheader \
    2>/dev/null | sed 's/^/gpu: /'
  echo "python: $(python3 --version 2>&1)"
  echo "torch: $(python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -1)"
  echo "transformers: $(python3 -c 'import transformers; print(transformers.__version__)' 2>&1 | tail -1)"
  echo "LD_LIBRARY_PATH: $LD_LIBRARY_PATH"
  for b in "$here"/bin/*; do ldd "$b" | grep "not found" | sed "s|^|unresolved: $(basename "$b"): |"; done
} >"$results/machine.txt" 2>&1

sampler=""
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader,nounits -lms 500 \
    >"$results/gpu-memory.csv" 2>/dev/null &
  sampler=$!
fi

# step NAME CAP STDOUT CMD...: runs CMD for at most CAP seconds (less if the budget is running out) with
# stderr, and stdout unless STDOUT names a file, in NAME.log; appends "NAME rc seconds start end" to
# steps.tsv (rc 124: timed out; "not-run": no time left, returned as 125).
step() {
  local name=$1 cap=$2 stdout=$3
  shift 3
  local left=$((budget - ($(date +%s) - t_start) - 15))
  [ "$left" -lt "$cap" ] && cap=$left
  if [ "$cap" -lt 10 ]; then
    printf '%s\tnot-run\t0\t0\t0\n' "$name" >>"$results/steps.tsv"
    return 125
  fi
  local t0 rc log=$results/${name//:/-}.log
  t0=$(date +%s)
  if [ "$stdout" = - ]; then
    timeout --kill-after=10 "$cap" "$@" >"$log" 2>&1
  else
    timeout --kill-after=10 "$cap" "$@" >"$results/$stdout" 2>"$log"
  fi
  rc=$?
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - t0))" "$t0" "$(date +%s)" >>"$results/steps.tsv"
  echo "$name: exit $rc in $(($(date +%s) - t0)) s" >&2
  return $rc
}

status=0
: >"$results/steps.tsv"
while read -r name; do
  [ -n "$name" ] || continue
  exe="$here/bin/test_$name"
  if [ ! -x "$exe" ]; then
    printf 'test:%s\tmissing\t0\t0\t0\n' "$name" >>"$results/steps.tsv"
    status=1
    continue
  fi
  step "test:$name" 240 - "$exe"
  rc=$?
  # 77 (skipped) on a GPU machine is a driver or library problem: a failure here
  [ $rc -ne 0 ] && status=1
  # a failure: once more waiting after every op, so that the log names the op that faulted
  if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ $rc -ne 125 ]; then
    GKD_CUDA_SYNC=1 step "test-sync:$name" 120 - "$exe"
  fi
done <"$here/cuda-tests.txt"

gkd=$here/bin/gkd
issue3_gkd=(--layers 12 --dim 768 --heads 12 --kv-heads 12 --ffn 2048 --vocab 32768 --batch 16 --seq 1024
  --gen-batch 64 --gen-new 128)
issue3_torch=(--preset issue3 --prompt-len 16) # gkd bench's prompts are 16 tokens
have_torch=0
python3 -c "import torch; assert torch.cuda.is_available()" >/dev/null 2>&1 && have_torch=1
[ -x "$gkd" ] && step gkd-issue3 150 gkd-issue3.json "$gkd" bench --device cuda --json --only sgemm,train,generate \
  "${issue3_gkd[@]}"
[ $have_torch = 1 ] && step torch-issue3 150 torch-issue3.json python3 "$here/bench_torch.py" "${issue3_torch[@]}"
[ -x "$gkd" ] && step gkd-small 120 gkd-small.json "$gkd" bench --device cuda --json
[ $have_torch = 1 ] && step torch-small 90 torch-small.json python3 "$here/bench_torch.py" --preset gkd-bench
[ -x "$gkd" ] && GKD_CUDA_TF32=1 step gkd-issue3-tf32 90 gkd-issue3-tf32.json "$gkd" bench --device cuda --json \
  --only sgemm,train "${issue3_gkd[@]}"
[ $have_torch = 1 ] && step torch-issue3-tf32 90 torch-issue3-tf32.json python3 "$here/bench_torch.py" \
  "${issue3_torch[@]}" --tf32 --skip-generate
[ -x "$gkd" ] && step gkd-issue3-bf16 90 gkd-issue3-bf16.json "$gkd" bench --device cuda --json --precision bf16 \
  --only sgemm,train "${issue3_gkd[@]}"

[ -n "$sampler" ] && kill "$sampler" 2>/dev/null
echo "total_s: $(($(date +%s) - t_start))" >>"$results/machine.txt"
if python3 "$here/gpu-report.py" "$results" >"$results/report.log" 2>&1; then
  echo "wrote $results/benchmarks-gpu.md"
else
  echo "gpu-report.py failed (report.log); steps.tsv and the logs are the record" >&2
fi
column -t "$results/steps.tsv" >"$results/summary.txt" 2>/dev/null || cp "$results/steps.tsv" "$results/summary.txt"
cat "$results/summary.txt"
# The device tool brings back at most 8 files: everything goes into results.tgz, and only it and the three
# summaries stay loose (GKD_GPU_KEEP_LOGS=1 keeps every file loose as well).
pack="${TMPDIR:-/tmp}/gkd-gpu-results.$$.tgz"
if tar -C "$results" -czf "$pack" . 2>/dev/null; then
  mv "$pack" "$results/results.tgz"
  if [ "${GKD_GPU_KEEP_LOGS:-0}" != 1 ]; then
    find "$results" -maxdepth 1 -type f ! -name results.tgz ! -name benchmarks-gpu.md ! -name summary.txt \
      ! -name machine.txt -delete
  fi
fi
exit $status
EOF
chmod +x "$out/run-gpu-tests.sh"

size=$(du -sm "$out" | cut -f1)
echo "gpu-bundle/: ${#bins[@]} binaries, $(tar -tzf "$out/libs.tar.gz" | grep -c '\.so') libraries (packed), ${size} MiB"
ls "$out/bin"; tar -tzf "$out/libs.tar.gz"
if [ "$size" -ge 64 ]; then
  echo "gpu-bundle/ is ${size} MiB: over the 64 MiB a GPU session can carry" >&2
  exit 1
fi
