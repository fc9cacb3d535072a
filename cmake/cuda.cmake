# The CUDA backend's build settings, included by CMakeLists.txt once gkd_core exists.
# Rules: GKD_CUDA defaults to ON exactly when a CUDA compiler is found, so a machine without the toolkit
# builds the CPU-only library unchanged. Only sm_90 (H100) machine code plus its PTX is generated: nvcc
# is slow, and the PTX lets newer GPUs JIT the kernels. Tests in tests/cuda/ are labelled `cuda` and exit
# 77 (skipped) where no GPU is present.
include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(GKD_CUDA_DEFAULT ON)
else()
  set(GKD_CUDA_DEFAULT OFF)
endif()
option(GKD_CUDA "Build the CUDA backend (core/*.cu, rl/*.cu)" ${GKD_CUDA_DEFAULT})
if(NOT GKD_CUDA)
  return()
endif()
if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR "GKD_CUDA is ON but no CUDA compiler was found (set CUDACXX or put nvcc on PATH)")
endif()

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "90-real;90-virtual")
endif()
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_EXTENSIONS OFF)
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

# The compile options set above with add_compile_options (-Wall, -march=..., sanitizers) are host
# compiler flags that nvcc does not accept. Keep them for C as they are and hand them to nvcc's host
# compiler with -Xcompiler; options already written as generator expressions are left alone. -Xcompiler
# splits at commas, so an option with a comma (-fsanitize=address,undefined) stays C-only: the host side
# of the .cu files is then not instrumented, which the sanitizers tolerate.
function(gkd_split_host_options out)
  set(result "")
  foreach(opt ${ARGN})
    if(opt MATCHES "^\\$<")
      list(APPEND result "${opt}")
    elseif(opt MATCHES ",")
      list(APPEND result "$<$<COMPILE_LANGUAGE:C>:${opt}>")
    else()
      list(APPEND result "$<$<COMPILE_LANGUAGE:C>:${opt}>" "$<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=${opt}>")
    endif()
  endforeach()
  set(${out} "${result}" PARENT_SCOPE)
endfunction()
get_directory_property(gkd_dir_options COMPILE_OPTIONS)
gkd_split_host_options(gkd_dir_options ${gkd_dir_options})
set_directory_properties(PROPERTIES COMPILE_OPTIONS "${gkd_dir_options}")
get_target_property(gkd_core_options gkd_core COMPILE_OPTIONS)
if(gkd_core_options)
  gkd_split_host_options(gkd_core_options ${gkd_core_options})
  set_target_properties(gkd_core PROPERTIES COMPILE_OPTIONS "${gkd_core_options}")
endif()

file(GLOB GKD_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/core/*.cu ${CMAKE_SOURCE_DIR}/rl/*.cu)
target_sources(gkd_core PRIVATE ${GKD_CUDA_SOURCES})
# The divergence kernels evaluate the CPU's formulas (rl/divergence_terms.h) and recompute some of them in
# a later pass: without contraction they round like the CPU's (gcc does not contract in ISO C mode) and
# every copy of a formula gives the same bits.
file(GLOB GKD_CUDA_RL_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/rl/*.cu)
set_source_files_properties(${GKD_CUDA_RL_SOURCES} PROPERTIES COMPILE_OPTIONS "--fmad=false")
# gkd_core was created before the architectures were set, so it did not pick them up by itself.
set_target_properties(gkd_core PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
target_compile_definitions(gkd_core PUBLIC GKD_HAVE_CUDA=1)
target_link_libraries(gkd_core PUBLIC CUDA::cudart CUDA::cublas CUDA::curand)
# -lineinfo: compute-sanitizer and profilers can name the source line of a failing kernel.
target_compile_options(gkd_core PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)

file(GLOB GKD_CUDA_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/cuda/test_*.c)
foreach(src ${GKD_CUDA_TESTS})
  get_filename_component(name ${src} NAME_WE)
  string(REGEX REPLACE "^test_" "" name ${name})
  add_executable(test_${name} ${src})
  target_link_libraries(test_${name} PRIVATE gkd_core)
  target_compile_definitions(test_${name} PRIVATE GKD_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  add_test(NAME ${name} COMMAND test_${name} WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(${name} PROPERTIES LABELS "cuda" SKIP_RETURN_CODE 77)
endforeach()
