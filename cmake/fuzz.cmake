# libFuzzer targets for the upload path (headers, chunks, stored dataset files) and the model-file
# loaders, run by ctest for a bounded time (tests fuzz.upload and fuzz.model_file).
#
# How: libFuzzer needs clang, the default build is g++. So the fuzz targets live in a CMake project
# of their own, tests/fuzz/CMakeLists.txt, which compiles the core, the generated messages and the
# server sources the targets drive with clang, -fsanitize=fuzzer-no-link,address,undefined, and links
# the targets with -fsanitize=fuzzer. This file builds that project as an ExternalProject in
# BUILD/fuzz, as part of the normal build (so CI's `cmake --build build` makes it and `ctest` only
# runs it), and registers the tests. A separate project rather than the top-level one configured
# again: it compiles only what the targets link (no client, services, benchmarks, tests), and the
# top-level CMakeLists.txt needs no switch for it.
#
# Without a clang++ that links -fsanitize=fuzzer (Debian: clang and libclang-rt-dev), or with
# -DNTK_FUZZ_TESTS=OFF, the fuzz tests are registered anyway and report "skipped" (exit 77).
#
# Independent of clang, the g++ build links the same target sources with a small driver and replays
# the committed regression inputs (tests/fuzz/regressions) and the seeds: fuzz.replay.*.
option(NTK_FUZZ_TESTS "Build the libFuzzer targets with clang and run them in ctest" ON)
set(NTK_FUZZ_SECONDS 30 CACHE STRING "Seconds each fuzz test runs its target (-max_total_time)")
find_program(NTK_FUZZ_CXX NAMES clang++ clang++-16 clang++-15 clang++-14 DOC "clang++ for the fuzz build")

set(ntk_fuzz_src ${PROJECT_SOURCE_DIR}/tests/fuzz)
set(ntk_fuzz_bin ${CMAKE_BINARY_DIR}/fuzz)
set(ntk_fuzz_skip "")
if(NOT NTK_FUZZ_TESTS)
  set(ntk_fuzz_skip "NTK_FUZZ_TESTS is OFF")
elseif(NOT NTK_FUZZ_CXX)
  set(ntk_fuzz_skip "no clang++ found (install clang and libclang-rt-dev)")
else()
  # Can this clang link a libFuzzer target with the sanitizers? (Debian ships libFuzzer in
  # libclang-rt-N-dev, separately from clang.) Probed once per compiler.
  if(NOT DEFINED NTK_FUZZ_CXX_WORKS OR NOT NTK_FUZZ_CXX_PROBED STREQUAL NTK_FUZZ_CXX)
    set(probe ${CMAKE_BINARY_DIR}/CMakeFiles/ntk_fuzz_probe)
    file(MAKE_DIRECTORY ${probe})
    file(WRITE ${probe}/probe.cpp
         "#include <cstddef>\n#include <cstdint>\nextern \"C\" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }\n")
    execute_process(COMMAND ${NTK_FUZZ_CXX} -std=c++20 -fsanitize=fuzzer,address,undefined ${probe}/probe.cpp
                            -o ${probe}/probe
                    RESULT_VARIABLE probe_rc OUTPUT_QUIET ERROR_VARIABLE probe_err)
    if(probe_rc EQUAL 0)
      set(works ON)
    else()
      set(works OFF)
      message(STATUS "ntkserve: ${NTK_FUZZ_CXX} cannot link -fsanitize=fuzzer: ${probe_err}")
    endif()
    set(NTK_FUZZ_CXX_WORKS ${works} CACHE INTERNAL "")
    set(NTK_FUZZ_CXX_PROBED ${NTK_FUZZ_CXX} CACHE INTERNAL "")
  endif()
  if(NOT NTK_FUZZ_CXX_WORKS)
    set(ntk_fuzz_skip "${NTK_FUZZ_CXX} cannot link -fsanitize=fuzzer (install libclang-rt-dev)")
  endif()
endif()

if(ntk_fuzz_skip)
  message(STATUS "ntkserve: fuzz tests will be skipped: ${ntk_fuzz_skip}")
else()
  message(STATUS "ntkserve: fuzz targets built with ${NTK_FUZZ_CXX} in ${ntk_fuzz_bin}, ${NTK_FUZZ_SECONDS} s per ctest run")
  include(ExternalProject)
  ExternalProject_Add(ntk_fuzz
    SOURCE_DIR ${ntk_fuzz_src}
    BINARY_DIR ${ntk_fuzz_bin}
    PREFIX ${CMAKE_BINARY_DIR}/fuzz-ep
    CMAKE_ARGS -DCMAKE_CXX_COMPILER=${NTK_FUZZ_CXX} "-DCMAKE_PREFIX_PATH=${CMAKE_PREFIX_PATH}"
    INSTALL_COMMAND ""
    # The sub-build's own dependency tracking decides what to rebuild.
    BUILD_ALWAYS ON
    USES_TERMINAL_CONFIGURE ON
    USES_TERMINAL_BUILD ON
    BUILD_BYPRODUCTS ${ntk_fuzz_bin}/upload_fuzz ${ntk_fuzz_bin}/model_file_fuzz)
endif()

# fuzz.upload, fuzz.model_file: each target for NTK_FUZZ_SECONDS over a fresh working corpus, starting
# from the generated seeds and the committed regression inputs; any crash, sanitizer report, leak,
# invariant violation, input slower than 10 s or allocation over 2 GiB fails the test.
foreach(target upload model_file)
  set(dict -)
  if(EXISTS ${ntk_fuzz_src}/${target}.dict)
    set(dict ${ntk_fuzz_src}/${target}.dict)
  endif()
  add_test(NAME fuzz.${target}
           COMMAND sh ${ntk_fuzz_src}/run_fuzzer.sh ${ntk_fuzz_bin}/${target}_fuzz ${NTK_FUZZ_SECONDS}
                   ${CMAKE_CURRENT_BINARY_DIR}/fuzz-runs/${target} ${dict}
                   ${ntk_fuzz_bin}/seeds/${target} ${ntk_fuzz_src}/regressions/${target})
  math(EXPR timeout "${NTK_FUZZ_SECONDS} + 120")
  set_tests_properties(fuzz.${target} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT ${timeout} LABELS fuzz
                       ENVIRONMENT "NTK_LOG_LEVEL=warning;NTK_FUZZ_SKIP_REASON=${ntk_fuzz_skip}")

  # The same target source, compiled by the default compiler with a main() that runs each input once.
  add_executable(${target}_fuzz_replay ${ntk_fuzz_src}/${target}_fuzz.cpp ${ntk_fuzz_src}/replay_main.cpp)
  target_link_libraries(${target}_fuzz_replay PRIVATE ntk::server)
  ntk_set_warnings(${target}_fuzz_replay)
  add_test(NAME fuzz.replay.${target}
           COMMAND ${target}_fuzz_replay ${ntk_fuzz_src}/regressions/${target} ${ntk_fuzz_bin}/seeds/${target})
  set_tests_properties(fuzz.replay.${target} PROPERTIES LABELS fuzz ENVIRONMENT "NTK_LOG_LEVEL=warning")
endforeach()
