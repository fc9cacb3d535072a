#!/usr/bin/env bash
# Builds gkd with the CUDA backend on this machine (which needs nvcc, not a GPU) and packs what a bare GPU
# machine needs to run the CUDA tests and the benchmark into gpu-bundle/ (git-ignored): the gkd binary,
# the test executables, the shared libraries they load that are neither CUDA's nor libc's, and
# run-gpu-tests.sh. The GPU machine brings its own CUDA 13 runtime (libcudart, libcublas); it has no
# package manager and no network, so everything else travels. The bundle must stay under 64 MiB.
# Usage: tools/gpu-bundle.sh [build-dir]   (default build-gpu-bundle)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-gpu-bundle}
out=$root/gpu-bundle
jobs=${GKD_JOBS:-2}

# GKD_NATIVE=OFF: the GPU machine's CPU may lack this one's instruction set extensions.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DGKD_CUDA=ON -DGKD_NATIVE=OFF >/dev/null
cmake --build "$build" -j"$jobs"

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/lib-fallback"
bins=()
[ -x "$build/gkd" ] && bins+=("$build/gkd")
for t in "$build"/test_*; do
  [ -x "$t" ] && [ -f "$t" ] && bins+=("$t")
done
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

cp "$root/tools/bench_torch.py" "$out/" 2>/dev/null || true

cat >"$out/run-gpu-tests.sh" <<'EOF'
#!/usr/bin/env bash
# Runs the CUDA tests and the CUDA benchmark from this bundle on a GPU machine.
# Usage: gpu-bundle/run-gpu-tests.sh [results-dir]   (default: ./gpu-results)
# Writes one log per test, bench.json and summary.txt into results-dir. Exits non-zero if a test failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
results=${1:-$PWD/gpu-results}
mkdir -p "$results"
cuda_dirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/lib; do
  [ -d "$d" ] && cuda_dirs="$cuda_dirs:$d"
done
export LD_LIBRARY_PATH="$here/lib${cuda_dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# CUDA elsewhere (another prefix, pip's nvidia-* wheels): look for the runtime and cuBLAS by name.
if ldd "$here/bin/test_cuda_ops" | grep -qE 'lib(cudart|cublas).*not found'; then
  for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13; do
    found=$(find /usr /opt -maxdepth 8 -name "$lib" 2>/dev/null | head -1)
    [ -n "$found" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$(dirname "$found")"
  done
fi
if ldd "$here/bin/test_cuda_ops" | grep -qE 'lib(stdc\+\+|gcc_s).*not found'; then
  export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$here/lib-fallback"
fi
{
  echo "== machine"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "(no nvidia-smi)"
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  echo "== unresolved libraries"
  for b in "$here"/bin/*; do ldd "$b" | grep "not found" | sed "s|^|$(basename "$b"): |"; done
} >"$results/summary.txt" 2>&1

status=0
for t in "$here"/bin/test_cuda_*; do
  name=$(basename "$t")
  start=$(date +%s)
  "$t" >"$results/$name.log" 2>&1
  rc=$?
  case $rc in
    0) verdict=passed ;;
    77)
      verdict=skipped
      # a GPU machine where the tests find no device has a driver or library problem: that is a failure
      if [ -e /dev/nvidia0 ]; then verdict="FAILED (skipped although /dev/nvidia0 exists)"; status=1; fi ;;
    *) verdict="FAILED (exit $rc)"; status=1 ;;
  esac
  echo "$name: $verdict in $(($(date +%s) - start)) s" | tee -a "$results/summary.txt"
done
if [ -x "$here/bin/gkd" ]; then
  "$here/bin/gkd" bench --device cuda --json >"$results/bench.json" 2>"$results/bench.log"
  rc=$?
  echo "gkd bench --device cuda --json: exit $rc (bench.json, bench.log)" | tee -a "$results/summary.txt"
  if [ $rc -ne 0 ]; then
    # the distillation part may not run on the device yet; the model's own numbers still can
    "$here/bin/gkd" bench --device cuda --json --only sgemm,train,generate >"$results/bench-model.json" \
      2>"$results/bench-model.log"
    echo "gkd bench --device cuda --json --only sgemm,train,generate: exit $? (bench-model.json)" |
      tee -a "$results/summary.txt"
  fi
else
  echo "gkd bench: no gkd binary in this bundle" | tee -a "$results/summary.txt"
fi
# The PyTorch side of the comparison, where the machine has PyTorch.
if python3 -c "import torch; assert torch.cuda.is_available()" >/dev/null 2>&1; then
  for preset in gkd-bench issue3; do
    python3 "$here/bench_torch.py" --preset $preset --json-out "$results/torch-$preset.json" \
      >"$results/torch-$preset.log" 2>&1
    echo "bench_torch.py --preset $preset: exit $? (torch-$preset.json)" | tee -a "$results/summary.txt"
  done
else
  echo "bench_torch.py: no PyTorch with CUDA here" | tee -a "$results/summary.txt"
fi
exit $status
EOF
chmod +x "$out/run-gpu-tests.sh"

size=$(du -sm "$out" | cut -f1)
echo "gpu-bundle/: ${#bins[@]} binaries, $(ls "$out/lib" | wc -l) libraries, ${size} MiB"
ls "$out/bin" "$out/lib" "$out/lib-fallback"
if [ "$size" -ge 64 ]; then
  echo "gpu-bundle/ is ${size} MiB: over the 64 MiB a GPU session can carry" >&2
  exit 1
fi
