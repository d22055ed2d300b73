#!/usr/bin/env bash
# What deepstruct costs a user's translation unit to compile (issue 15). Prints
#  1. every public header on its own: CPU seconds (user + system) of compiling a file that includes
#     only it, and that minus the same for <Eigen/Core> alone;
#  2. a user's program: compile_time/ffn_forward.cpp (the umbrella header, one MaskedDeepFFN
#     forward) against compile_time/eigen_forward.cpp (the same network as plain Eigen products),
#     interleaved, median of the rounds, and their ratio (target: at most 1.5x), header-only and
#     in the compiled mode (DEEPSTRUCT_EXTERN_TEMPLATES; deepstruct::compiled), whose one-off
#     cost, the translation unit of the instantiations, is printed too; and the floor of the
#     header-only mode, the Eigen program with the umbrella header parsed but nothing of it used.
#
#   bash tests/benchmarks/compile_time.sh [rounds]        (CXX and CXXFLAGS are honoured)
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
rounds="${1:-3}"
cxx="${CXX:-c++}"
flags=(${CXXFLAGS:--O2} -std=c++17 -I"$src/include" -isystem /usr/include/eigen3)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cpu_seconds() {  # compiles $1, prints the CPU seconds it took
  local TIMEFORMAT='%3U %3S'
  local t
  t="$({ time "$cxx" "${flags[@]}" -c "$1" -o "$work/out.o" 2>/dev/null; } 2>&1)" || { echo "failed to compile $1" >&2; exit 1; }
  awk '{printf "%.2f", $1 + $2}' <<<"$t"
}
median() { tr ' ' '\n' | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "compiler: $("$cxx" --version | head -1); flags: ${flags[*]}"
printf '#include <Eigen/Core>\nint main() {}\n' >"$work/eigen.cpp"
base="$(cpu_seconds "$work/eigen.cpp")"
printf '\n%-40s %8s %12s\n' "header (include only)" "CPU s" "- Eigen/Core"
printf '%-40s %8.2f %12s\n' "<Eigen/Core>" "$base" "-"
boost_ok=1
printf '#include <boost/graph/adjacency_list.hpp>\nint main() {}\n' >"$work/boost.cpp"
"$cxx" "${flags[@]}" -fsyntax-only "$work/boost.cpp" 2>/dev/null || boost_ok=0
(cd "$src/include" && find deepstruct -name '*.hpp' -not -path '*/detail/*' -not -name instantiate.hpp | sort) | while read -r h; do
  if [[ $boost_ok == 0 && ($h == deepstruct/graph* ) ]]; then continue; fi
  printf '#include <%s>\nint main() {}\n' "$h" >"$work/h.cpp"
  t="$(cpu_seconds "$work/h.cpp")"
  printf '%-40s %8.2f %+12.2f\n' "<$h>" "$t" "$(awk -v a="$t" -v b="$base" 'BEGIN {print a - b}')"
done

ours=() theirs=() compiled=() floor=()
printf '#include <deepstruct/instantiate.hpp>\n' >"$work/instantiate.cpp"
for ((r = 0; r < rounds; ++r)); do
  theirs+=("$(cpu_seconds "$src/tests/benchmarks/compile_time/eigen_forward.cpp")")
  ours+=("$(cpu_seconds "$src/tests/benchmarks/compile_time/ffn_forward.cpp")")
  # The floor of the header-only mode: the Eigen program with the umbrella header parsed too
  # (nothing of deepstruct instantiated), what any header-only program with Eigen's products pays.
  saved=("${flags[@]}")
  flags+=(-include deepstruct/deepstruct.hpp)
  floor+=("$(cpu_seconds "$src/tests/benchmarks/compile_time/eigen_forward.cpp")")
  flags=("${saved[@]}")
  flags+=(-DDEEPSTRUCT_EXTERN_TEMPLATES=1)
  compiled+=("$(cpu_seconds "$src/tests/benchmarks/compile_time/ffn_forward.cpp")")
  unset 'flags[${#flags[@]}-1]'
done
flags+=(-DDEEPSTRUCT_EXTERN_TEMPLATES=1)
once="$(cpu_seconds "$work/instantiate.cpp")"
e="$(echo "${theirs[*]}" | median)"
verdict() { awk -v o="$1" -v e="$e" 'BEGIN {printf "%.2fx %s", o / e, (o / e <= 1.5) ? "PASS (<= 1.5x)" : "MISS (> 1.5x)"}'; }
printf '\none FFN forward, median of %d rounds (CPU s): Eigen alone %.2f\n' "$rounds" "$e"
o="$(echo "${ours[*]}" | median)"
printf '  deepstruct.hpp, header-only          %6.2f: %s\n' "$o" "$(verdict "$o")"
f="$(echo "${floor[*]}" | median)"
printf '  (floor of header-only: Eigen alone + parsing deepstruct.hpp %.2f: %.2fx)\n' "$f" "$(awk -v a="$f" -v b="$e" 'BEGIN {print a / b}')"
c="$(echo "${compiled[*]}" | median)"
printf '  deepstruct.hpp, compiled mode        %6.2f: %s\n' "$c" "$(verdict "$c")"
printf '  (compiled mode, once per build: the instantiations of deepstruct::compiled, %.2f s)\n' "$once"
