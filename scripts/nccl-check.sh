#!/usr/bin/env bash
# Compile-only check of the communicator's NCCL path (no GPU, no NCCL library needed):
# native/comm/nccl_channel.cpp and mpi_communicator.cpp with -DZOFO_NCCL, against the
# CUDA toolkit's headers, MPI's headers, and NCCL's nccl.h where one is installed (else
# the declarations in native/comm/nccl-decls/nccl.h, which carry NCCL's ABI values).
# g++ compiles both (and the addon's NCCL branch); nvcc compiles both as CUDA sources.
#
#   scripts/nccl-check.sh                     OK/FAIL per file; non-zero exit on any FAIL
#   ZOFO_REQUIRE_NVCC=1 scripts/nccl-check.sh  also fail without a CUDA toolkit or MPI
set -u
cd "$(dirname "$0")/.."

skip() {
  echo "nccl-check: $1; the NCCL path is not checked."
  if [ "${ZOFO_REQUIRE_NVCC:-0}" = "1" ]; then echo "nccl-check: ZOFO_REQUIRE_NVCC=1, so this is an error."; exit 1; fi
  exit 0
}

cuda_home="${CUDA_HOME:-/usr/local/cuda}"
[ -f "$cuda_home/include/cuda_runtime.h" ] || skip "no CUDA toolkit headers at $cuda_home/include (set CUDA_HOME)"
mpi_flags="$(mpicxx --showme:compile 2>/dev/null || true)"
[ -n "$mpi_flags" ] || skip "no MPI compiler wrapper (apt-get install libopenmpi-dev)"

nccl_inc=""
for d in "${NCCL_HOME:+$NCCL_HOME/include}" /usr/include /usr/local/include "$cuda_home/include"; do
  if [ -n "$d" ] && [ -f "$d/nccl.h" ]; then nccl_inc="$d"; break; fi
done
if [ -n "$nccl_inc" ]; then
  echo "nccl-check: NCCL's own header: $nccl_inc/nccl.h"
else
  nccl_inc="native/comm/nccl-decls"
  echo "nccl-check: no nccl.h installed; using the declarations in $nccl_inc/nccl.h"
fi

status=0
check() {
  local label="$1"; shift
  if out="$("$@" 2>&1)"; then echo "OK    $label"; else echo "FAIL  $label"; echo "$out"; status=1; fi
}
for f in native/comm/nccl_channel.cpp native/comm/mpi_communicator.cpp; do
  check "g++  $f" g++ -std=c++17 -fsyntax-only -Wall -Werror -DZOFO_NCCL -Inative -I"$nccl_inc" -I"$cuda_home/include" $mpi_flags "$f"
  if [ -x "$cuda_home/bin/nvcc" ]; then
    check "nvcc $f" "$cuda_home/bin/nvcc" -std=c++17 -x cu -c -o /dev/null -DZOFO_NCCL -Inative -I"$nccl_inc" $mpi_flags "$f"
  fi
done
# The addon's NCCL branch (ncclSelfTest) against the Node-API headers.
napi_inc="$(node -p "require('node-api-headers').include_dir" 2>/dev/null || true)"
addon_inc="$(node -p "require('node-addon-api').include_dir" 2>/dev/null || true)"
if [ -n "$napi_inc" ] && [ -n "$addon_inc" ]; then
  check "g++  native/comm/addon_comm.cpp" g++ -std=c++17 -fsyntax-only -Wall -Werror -DZOFO_NCCL -DNAPI_VERSION=8 \
    -DNODE_ADDON_API_DISABLE_DEPRECATED -Inative -I"$napi_inc" -I"$addon_inc" -I"$nccl_inc" -I"$cuda_home/include" $mpi_flags native/comm/addon_comm.cpp
fi
exit $status
