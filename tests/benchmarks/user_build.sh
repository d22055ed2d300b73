#!/usr/bin/env bash
# Speed as users get it (issue 15): builds tests/benchmarks/user_build (a user's project:
# find_package(deepstruct), plain Release) three ways against a fresh install of this checkout,
#   default   what the README gives: deepstruct::deepstruct brings -march=native and OpenMP
#   portable  -DDEEPSTRUCT_NATIVE=OFF -DDEEPSTRUCT_OPENMP=OFF: what the default was before issue 15
#             (Eigen's SSE2 kernels on x86-64, one thread)
#   tuned     flags set by hand as our examples have them: -O3 -march=native, OpenMP
# runs them interleaved, round after round, and prints each workload's median and the ratios
# default/tuned and portable/tuned (target: default within 1.3x of tuned).
#
#   bash tests/benchmarks/user_build.sh [work-dir] [rounds]
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="${1:-/tmp/deepstruct-user-build}"
rounds="${2:-5}"
mkdir -p "$work"
log="$work/build.log"
: >"$log"
echo "building in $work (log: $log)"
cmake -S "$src" -B "$work/deepstruct" -DCMAKE_BUILD_TYPE=Release -DDEEPSTRUCT_BUILD_TESTS=OFF \
  -DDEEPSTRUCT_BUILD_EXAMPLES=OFF -DDEEPSTRUCT_BUILD_BENCHMARKS=OFF >>"$log"
cmake --install "$work/deepstruct" --prefix "$work/prefix" >>"$log"
build() {  # name, extra cmake options...
  local name="$1"
  shift
  rm -rf "$work/$name"
  cmake -S "$src/tests/benchmarks/user_build" -B "$work/$name" -DCMAKE_PREFIX_PATH="$work/prefix" \
    -DCMAKE_BUILD_TYPE=Release "$@" >>"$log"
  cmake --build "$work/$name" >>"$log"
}
build default
build portable -DDEEPSTRUCT_NATIVE=OFF -DDEEPSTRUCT_OPENMP=OFF
build tuned -DDEEPSTRUCT_NATIVE=OFF -DDEEPSTRUCT_OPENMP=OFF -DUSER_BUILD_OPENMP=ON "-DCMAKE_CXX_FLAGS_RELEASE=-O3 -march=native -DNDEBUG"

variants=(default portable tuned)
for v in "${variants[@]}"; do
  echo "$v: $("$work/$v/bench_user_build" 1 | awk '/^simd|^threads/ {printf "%s ", $0}')"
done
results="$work/results.txt"
: >"$results"
for ((r = 1; r <= rounds; ++r)); do
  for v in "${variants[@]}"; do
    ${DEEPSTRUCT_BENCH_RUN:-} "$work/$v/bench_user_build" 7 | awk -v v="$v" '/_ms / {print v, $1, $2}' >>"$results"
  done
done
# Median over the rounds of each variant's per-round medians, and the ratios.
awk '
  { t[$1 " " $2] = t[$1 " " $2] " " $3; seen[$2] = 1 }
  function med(s,   a, n, i, j, x) {
    n = split(s, a, " ")
    for (i = 2; i <= n; ++i) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; --j) a[j + 1] = a[j]; a[j + 1] = x }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    printf "%-16s %12s %12s %12s %16s %16s\n", "workload (ms)", "default", "portable", "tuned", "default/tuned", "portable/tuned"
    for (w in seen) {
      d = med(t["default " w]); p = med(t["portable " w]); u = med(t["tuned " w])
      printf "%-16s %12.2f %12.2f %12.2f %15.2fx %15.2fx  %s\n", w, d, p, u, d / u, p / u, (d / u <= 1.3 ? "PASS (<= 1.3x)" : "MISS (> 1.3x)")
    }
  }' "$results"
