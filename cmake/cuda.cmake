# The CUDA backend's build settings, included by CMakeLists.txt once the layer libraries exist.
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
option(GKD_CUDA "Build the CUDA backend (core/tensor/*.cu, rl/*.cu)" ${GKD_CUDA_DEFAULT})
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
foreach(lib gkd_base gkd_tensor gkd_text gkd_format gkd_store gkd_report gkd_reward gkd_rl)
  get_target_property(lib_options ${lib} COMPILE_OPTIONS)
  if(lib_options)
    gkd_split_host_options(lib_options ${lib_options})
    set_target_properties(${lib} PROPERTIES COMPILE_OPTIONS "${lib_options}")
  endif()
endforeach()

# The kernels belong to the layers whose C code calls them: the backend and sampler to tensor, the
# divergence rows to rl.
file(GLOB GKD_CUDA_TENSOR_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/core/tensor/*.cu)
file(GLOB GKD_CUDA_RL_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/rl/*.cu)
target_sources(gkd_tensor PRIVATE ${GKD_CUDA_TENSOR_SOURCES})
target_sources(gkd_rl PRIVATE ${GKD_CUDA_RL_SOURCES})
set_source_files_properties(${GKD_CUDA_RL_SOURCES} PROPERTIES COMPILE_OPTIONS "--fmad=false")
# The libraries were created before the architectures were set, so they did not pick them up by themselves.
# -lineinfo: compute-sanitizer and profilers can name the source line of a failing kernel.
foreach(lib gkd_base gkd_tensor gkd_text gkd_format gkd_store gkd_report gkd_reward gkd_rl)
  set_target_properties(${lib} PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
endforeach()
target_compile_options(gkd_tensor PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
target_compile_options(gkd_rl PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
target_compile_definitions(gkd_tensor PUBLIC GKD_HAVE_CUDA=1)
target_link_libraries(gkd_tensor PUBLIC CUDA::cudart CUDA::cublas CUDA::curand)

# NCCL (with MPI): the gradient all-reduce between GPUs (rl/dist_nccl.c). The CUDA toolkit's folders are
# searched first; without NCCL a device student's gradients are staged through the host for MPI.
find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR})
if(MPI_C_FOUND AND NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
  target_include_directories(gkd_rl SYSTEM PRIVATE ${NCCL_INCLUDE_DIR})
  target_compile_definitions(gkd_rl PRIVATE GKD_HAVE_NCCL=1)
  target_link_libraries(gkd_rl PUBLIC ${NCCL_LIBRARY} CUDA::cudart)
  message(STATUS "NCCL: ${NCCL_LIBRARY} (gradient all-reduce between GPUs)")
endif()

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
