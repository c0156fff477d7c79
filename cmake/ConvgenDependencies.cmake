# Finds convgen's dependencies; every one comes from a Debian package that
# scripts/setup.sh installs. Each failure names the package to install.

function(convgen_require_package found package what)
  if(NOT ${found})
    message(FATAL_ERROR "convgen: ${what} not found. Install the Debian package "
                        "'${package}' (scripts/setup.sh installs every dependency).")
  endif()
endfunction()

find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 CONFIG QUIET)
convgen_require_package(nlohmann_json_FOUND nlohmann-json3-dev "nlohmann/json (>= 3.10)")

# libzip through pkg-config: Debian's libzip CMake config also imports the
# zipcmp/zipmerge/ziptool binaries and fails when they are not installed.
find_package(PkgConfig QUIET)
convgen_require_package(PKG_CONFIG_FOUND pkg-config "pkg-config")
pkg_check_modules(LIBZIP QUIET IMPORTED_TARGET libzip>=1.7)
convgen_require_package(LIBZIP_FOUND libzip-dev "libzip (>= 1.7)")

find_package(CLI11 CONFIG QUIET)
convgen_require_package(CLI11_FOUND libcli11-dev "CLI11")

# ONNX input (src/model/OnnxModel): Debian's ONNX library, with protobuf,
# its checker and shape inference. The generator needs it; a runtime-only
# build (the GPU machine, the fuzzers) uses it where it is installed.
find_package(Protobuf QUIET)
if(Protobuf_FOUND)
  find_package(ONNX CONFIG QUIET)
endif()
if(NOT CONVGEN_RUNTIME_ONLY)
  convgen_require_package(Protobuf_FOUND libprotobuf-dev "protobuf")
  convgen_require_package(ONNX_FOUND libonnx-dev "the ONNX library")
endif()

if(NOT CONVGEN_RUNTIME_ONLY)
  # LLVM 19 exactly: the IR templates, passes and NVPTX backend are written
  # against its API. LLVM's version file only accepts a request that names
  # the minor version too (19.1), so find any LLVM, preferring Debian's
  # versioned prefix, and check the major version here.
  find_package(LLVM CONFIG QUIET
               HINTS /usr/lib/llvm-19/lib/cmake/llvm)
  if(NOT LLVM_FOUND)
    message(FATAL_ERROR
      "convgen: LLVM 19 not found. "
      "Install the Debian packages 'llvm-19-dev' and 'clang-19' (scripts/setup.sh), "
      "or point LLVM_DIR at an LLVM 19 build's lib/cmake/llvm. "
      "To build without LLVM (kernel runtime only) use -DCONVGEN_RUNTIME_ONLY=ON.")
  endif()
  if(NOT LLVM_VERSION_MAJOR EQUAL 19)
    message(FATAL_ERROR "convgen: needs LLVM 19, found ${LLVM_PACKAGE_VERSION} at ${LLVM_DIR}")
  endif()
  if(NOT "NVPTX" IN_LIST LLVM_TARGETS_TO_BUILD)
    message(FATAL_ERROR "convgen: the LLVM at ${LLVM_DIR} was built without the NVPTX target")
  endif()
  message(STATUS "convgen: LLVM ${LLVM_PACKAGE_VERSION} from ${LLVM_DIR}")

  # One target carrying LLVM's include path, definitions and the shared libLLVM.
  add_library(convgen_llvm INTERFACE)
  separate_arguments(convgen_llvm_definitions NATIVE_COMMAND "${LLVM_DEFINITIONS}")
  target_include_directories(convgen_llvm SYSTEM INTERFACE ${LLVM_INCLUDE_DIRS})
  target_compile_definitions(convgen_llvm INTERFACE ${convgen_llvm_definitions})
  target_link_libraries(convgen_llvm INTERFACE LLVM)
endif()
