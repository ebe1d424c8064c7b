#!/usr/bin/env bash
# Compile-only check of the CUDA sources (no GPU and no cuBLAS needed): every .cu under
# native/cuda and test/cuda that does not include a cuBLAS header is compiled for
# sm_80 and sm_90 with the flags that keep CPU/CUDA bit-exactness (--fmad=false).
#
#   scripts/nvcc-check.sh          # prints each file and OK/FAIL; non-zero exit on any FAIL
#   ZOFO_REQUIRE_NVCC=1 scripts/nvcc-check.sh   # also fail when no nvcc is installed
#
# nvcc is taken from $CUDACXX, then PATH, then /usr/local/cuda/bin/nvcc.
set -u
cd "$(dirname "$0")/.."

nvcc=""
if [ -n "${CUDACXX:-}" ]; then
  if command -v "$CUDACXX" >/dev/null 2>&1; then
    nvcc="$(command -v "$CUDACXX")"
  else
    echo "nvcc-check: warning: CUDACXX=$CUDACXX is not an executable; trying PATH and /usr/local/cuda"
  fi
fi
if [ -z "$nvcc" ]; then nvcc="$(command -v nvcc || true)"; fi
if [ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ]; then nvcc=/usr/local/cuda/bin/nvcc; fi
if [ -z "$nvcc" ]; then
  echo "nvcc-check: no nvcc found (looked at \$CUDACXX, PATH, /usr/local/cuda/bin/nvcc); CUDA sources not checked."
  if [ "${ZOFO_REQUIRE_NVCC:-0}" = "1" ]; then
    echo "nvcc-check: ZOFO_REQUIRE_NVCC=1, so this is an error."
    exit 1
  fi
  exit 0
fi
echo "nvcc-check: using $nvcc ($("$nvcc" --version | tail -n 1))"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

files=$(find native/cuda test/cuda -name '*.cu' 2>/dev/null | sort)
if [ -z "$files" ]; then
  echo "nvcc-check: no .cu files found under native/cuda or test/cuda"
  exit 1
fi

failed=0
checked=0
for f in $files; do
  if grep -Eq '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](cublas|cublasLt)' "$f"; then
    echo "SKIP $f (includes cuBLAS headers)"
    continue
  fi
  checked=$((checked + 1))
  if "$nvcc" -c -std=c++17 --fmad=false -I native \
      -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
      -o "$tmp/x.o" "$f" >"$tmp/log" 2>&1; then
    echo "OK   $f"
  else
    echo "FAIL $f"
    sed 's/^/     /' "$tmp/log"
    failed=$((failed + 1))
  fi
done

echo "nvcc-check: $checked checked, $failed failed"
[ "$failed" -eq 0 ]
