#!/usr/bin/env bash
# Checks that gcc really vectorises the CPU hot loops: every loop in
# native/cpu/perturb.cpp whose line ends in "// vectorised" must be reported as
# "loop vectorized" by -fopt-info-vec for the AVX2 (x86-64-v3) clone. A change that
# silently turns them scalar (a libm call, a branch on floats, errno) fails CI here.
# x86-64 + gcc only; elsewhere it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
src=native/cpu/perturb.cpp
if [[ "$(uname -m)" != x86_64 ]] || ! g++ --version 2>/dev/null | grep -qi 'g++\|gcc'; then
  echo "check-vectorized: needs gcc on x86-64; skipped"
  exit 0
fi
report="$(g++ -std=c++17 -O3 -ffp-contract=off -fno-math-errno -fno-trapping-math -march=x86-64-v3 -I native \
  -fopt-info-vec -fopt-info-vec-missed -c "$src" -o /dev/null 2>&1)"
fail=0
# Each marked line is instantiated several times (dtypes x clones): all must vectorise.
while IFS=: read -r line _; do
  if grep -q "perturb.cpp:$line:[0-9]*: optimized: loop vectorized" <<<"$report" &&
     ! grep -q "perturb.cpp:$line:[0-9]*: missed: couldn't vectorize loop" <<<"$report"; then
    echo "OK   $src:$line vectorised"
  else
    echo "FAIL $src:$line is marked vectorised but gcc did not vectorise it"
    fail=1
  fi
done < <(grep -n '// vectorised$' "$src")
[[ $(grep -c '// vectorised$' "$src") -gt 0 ]] || { echo "check-vectorized: no marked loops found"; exit 1; }
exit "$fail"
