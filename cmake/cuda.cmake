# Optional CUDA backend of zofo.
#
# Included by the top-level CMakeLists.txt, after the CPU target:
#     include(cmake/cuda.cmake)
# scripts/test-gpu.sh configures the top-level project with plain CMake (no Node.js):
# ZOFO_CUDA=1 and ZOFO_CUDA_TEST=ON build the CUDA library and its test programs.
#
# Whether to build it (a CMake variable ZOFO_CUDA, if set, wins over the environment):
#     ZOFO_CUDA=0     never
#     ZOFO_CUDA=1     always: a missing nvcc or cuBLAS is a configure error
#     unset / auto    when nvcc (check_language) and cuBLAS (CUDA::cublas) are found
# The choice is made at configure time; after changing it, reconfigure from scratch.
#
# Sets, for the including file:
#     ZOFO_BUILD_CUDA            ON / OFF
#     ZOFO_CUDA_ARCHITECTURES    "80;90" unless CMAKE_CUDA_ARCHITECTURES was given
# Defines, when ON:
#     zofo_cuda_kernels   static library from native/cuda/*.cu: the kernels, the CUDA
#                         backend and its cuBLAS matmul (PIC, static cudart);
#                         its PUBLIC usage requirements carry the include path (native/)
#                         and the bit-exactness flags (--fmad=false) to CUDA consumers
#     zofo_cuda_test, zofo_cuda_layers_test, zofo_cuda_attention_test, zofo_cuda_gemm_test,
#     zofo_cuda_engine_test   the test + benchmark programs of test/cuda, built by `all`
#                         only when ZOFO_CUDA_TEST is ON
#
# Bit-exactness with the CPU backend needs: nvcc --fmad=false (no a*b+c contraction),
# no -use_fast_math (keeps IEEE sqrt, division and denormals), -prec-sqrt=true (the
# default). Never add those flags to these targets.

include_guard(GLOBAL)

set(ZOFO_BUILD_CUDA OFF)
get_filename_component(_zofo_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)

# ---- what was asked for ----
if(DEFINED ZOFO_CUDA)
  set(_zofo_cuda_mode "${ZOFO_CUDA}")
elseif(DEFINED ENV{ZOFO_CUDA})
  set(_zofo_cuda_mode "$ENV{ZOFO_CUDA}")
else()
  set(_zofo_cuda_mode "auto")
endif()
string(TOLOWER "${_zofo_cuda_mode}" _zofo_cuda_mode)
if(_zofo_cuda_mode MATCHES "^(0|off|false|no)$")
  message(STATUS "zofo: CUDA backend disabled (ZOFO_CUDA=${_zofo_cuda_mode})")
  return()
elseif(_zofo_cuda_mode MATCHES "^(1|on|true|yes)$")
  set(_zofo_cuda_required TRUE)
elseif(_zofo_cuda_mode MATCHES "^(auto|)$")
  set(_zofo_cuda_required FALSE)
else()
  message(FATAL_ERROR "zofo: ZOFO_CUDA must be 0, 1 or auto, got '${_zofo_cuda_mode}'")
endif()

# Not built: an error when required, a status line otherwise. Leaves this file.
macro(_zofo_cuda_unavailable reason)
  if(_zofo_cuda_required)
    message(FATAL_ERROR "zofo: ZOFO_CUDA=1 requires the CUDA backend, but ${reason}. "
                        "(Where the CUDA backend is optional, leave ZOFO_CUDA unset or set it to 0.)")
  endif()
  message(STATUS "zofo: CUDA backend not built: ${reason} (ZOFO_CUDA=1 makes this an error)")
  return()
endmacro()

# ---- the compiler ----
# CMake looks for nvcc via CUDACXX and PATH; also try the toolkit's default location.
if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  find_program(_zofo_nvcc nvcc HINTS /usr/local/cuda/bin)
  if(_zofo_nvcc)
    set(ENV{CUDACXX} "${_zofo_nvcc}")
  endif()
endif()

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 80 90)  # A100, H100/H200
endif()
set(ZOFO_CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  _zofo_cuda_unavailable("no working CUDA compiler was found: put nvcc on PATH or set CUDACXX=/path/to/nvcc")
endif()
enable_language(CUDA)

# ---- the toolkit: cuBLAS decides (the addon's matmuls need it) ----
find_package(CUDAToolkit)
if(NOT CUDAToolkit_FOUND)
  _zofo_cuda_unavailable("the CUDA toolkit of ${CMAKE_CUDA_COMPILER} was not found (find_package(CUDAToolkit))")
endif()
if(NOT TARGET CUDA::cublas)
  _zofo_cuda_unavailable("cuBLAS (cublas_v2.h, libcublas) was not found in CUDA toolkit ${CUDAToolkit_VERSION} at ${CUDAToolkit_LIBRARY_ROOT}: install the toolkit's cuBLAS development package")
endif()
find_package(Threads REQUIRED)

set(ZOFO_BUILD_CUDA ON)
message(STATUS "zofo: CUDA backend ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, "
               "architectures ${ZOFO_CUDA_ARCHITECTURES})")

# ---- kernels ----
file(GLOB _zofo_cuda_sources CONFIGURE_DEPENDS "${_zofo_root}/native/cuda/*.cu")
add_library(zofo_cuda_kernels STATIC ${_zofo_cuda_sources})
set_target_properties(zofo_cuda_kernels PROPERTIES
  CUDA_ARCHITECTURES "${ZOFO_CUDA_ARCHITECTURES}"
  CUDA_SEPARABLE_COMPILATION OFF
  CUDA_RUNTIME_LIBRARY Static
  POSITION_INDEPENDENT_CODE ON
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON
  CXX_STANDARD 17
  CXX_STANDARD_REQUIRED ON)
target_include_directories(zofo_cuda_kernels PUBLIC "${_zofo_root}/native")
# PUBLIC: every .cu that includes common/philox.h must be compiled the same way.
target_compile_options(zofo_cuda_kernels PUBLIC $<$<COMPILE_LANGUAGE:CUDA>:--fmad=false>)
if(NOT MSVC)
  # The host side of .cu files runs the same header code (host emulation in the tests).
  target_compile_options(zofo_cuda_kernels PUBLIC $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-ffp-contract=off>)
endif()
# Static cudart: the built .node needs only the driver (libcuda) besides cuBLAS.
target_link_libraries(zofo_cuda_kernels PUBLIC CUDA::cudart_static CUDA::cublas)

# ---- test + benchmark programs (test/cuda/*.cu; scripts/test-gpu.sh runs them) ----
# Each compares the CUDA kernels or engine with the CPU backend, compiled in. Built by
# `all` only when ZOFO_CUDA_TEST is ON; otherwise build them with --target NAME. The
# published npm package ships no test/ folder: then there are no test targets.
option(ZOFO_CUDA_TEST "Build the CUDA test programs as part of the default target" OFF)
function(zofo_cuda_test_program name source)
  if(NOT EXISTS "${_zofo_root}/${source}")
    return()
  endif()
  set(extra)
  foreach(f ${ARGN})
    list(APPEND extra "${_zofo_root}/${f}")
  endforeach()
  add_executable(${name} "${_zofo_root}/${source}" ${extra})
  if(NOT ZOFO_CUDA_TEST)
    set_target_properties(${name} PROPERTIES EXCLUDE_FROM_ALL ON)
  endif()
  set_target_properties(${name} PROPERTIES
    CUDA_ARCHITECTURES "${ZOFO_CUDA_ARCHITECTURES}"
    CUDA_SEPARABLE_COMPILATION OFF
    CUDA_RUNTIME_LIBRARY Static
    CUDA_STANDARD 17
    CUDA_STANDARD_REQUIRED ON
    CXX_STANDARD 17
    CXX_STANDARD_REQUIRED ON)
  target_include_directories(${name} PRIVATE "${_zofo_root}")
  if(NOT MSVC)
    target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-O3 -ffp-contract=off -fno-math-errno -fno-trapping-math>)
  endif()
  target_link_libraries(${name} PRIVATE zofo_cuda_kernels Threads::Threads)
  add_test(NAME ${name} COMMAND ${name} --no-bench)  # effective where enable_testing() was called
endfunction()

zofo_cuda_test_program(zofo_cuda_test test/cuda/test_perturb.cu native/cpu/perturb.cpp native/cpu/philox_chunk.cpp)
zofo_cuda_test_program(zofo_cuda_layers_test test/cuda/test_layers.cu
  native/cpu/norm.cpp native/cpu/activation.cpp native/cpu/rope.cpp native/cpu/optim.cpp native/cpu/perturb.cpp
  native/cpu/philox_chunk.cpp)
zofo_cuda_test_program(zofo_cuda_attention_test test/cuda/test_attention.cu
  native/cpu/attention.cpp native/cpu/matmul.cpp native/cpu/perturb.cpp native/cpu/philox_chunk.cpp)
zofo_cuda_test_program(zofo_cuda_gemm_test test/cuda/test_gemm.cu)
# The engine test needs the whole CPU backend (zofo_cpu_backend, top-level CMakeLists.txt).
if(TARGET zofo_cpu_backend)
  zofo_cuda_test_program(zofo_cuda_engine_test test/cuda/test_engine.cu)
  if(TARGET zofo_cuda_engine_test)
    target_link_libraries(zofo_cuda_engine_test PRIVATE zofo_cpu_backend)
  endif()
endif()

# ---- CUDA node addon ----
# The CUDA .node target (zofo_cuda) is defined by the top-level CMakeLists.txt,
# linking zofo_cuda_kernels and CUDA::cublas, separate from the CPU addon so
# that a machine without a driver or cuBLAS can still load the CPU addon.
