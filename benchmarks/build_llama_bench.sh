#!/usr/bin/env bash
# Build llama.cpp's own `llama-bench` from the exact llama.cpp revision vendored by the
# llama-cpp-python installed in the project venv, so both measure the same kernels.
#
# Usage: benchmarks/build_llama_bench.sh        (from anywhere; FORCE=1 to rebuild)
# Output: benchmarks/.build/llama-bench (a link into the build folder, next to its shared libraries).
#
# CMake options mirror how melt builds llama-cpp-python (scripts/setup.sh): the ISA options
# come from scripts/llama_cmake_args.sh, the same script setup.sh feeds to CMAKE_ARGS. It prints
# nothing on most CPUs -> plain native build, exactly what a default `pip install llama-cpp-python`
# does (scikit-build-core builds Release and the sdist's CMakeLists.txt sets no GGML_* options on
# Linux, so llama.cpp defaults apply: GGML_NATIVE=ON, OPENMP=ON, LLAMAFILE=ON, no BLAS/GPU/
# backend-DL). On AMX CPUs it prints GGML_NATIVE=OFF + explicit AVX-512 flags without AMX, because
# the vendored AMX Q4_K matmul segfaults in our VMs (a native llama-bench crashes with SIGSEGV).
# GGML_NATIVE=ON is passed explicitly in the native case because llama.cpp turns its default OFF
# whenever SOURCE_DATE_EPOCH is set in the environment.
# Shared libraries, as llama.cpp builds by default and as llama-cpp-python ships them: a static
# (non-PIC) build runs ~2% faster here, which would compare melt against a llama-bench nobody
# gets from a default build. Deliberate differences from the Python build: LLAMA_OPENSSL=OFF (only
# used for model downloads), no tests/examples/server/app.
# EXTRA_CMAKE_ARGS (space-separated) is appended last, for local experiments.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
PIP="$ROOT/.venv/bin/pip"
OUT_DIR="${LLAMA_BENCH_DIR:-$ROOT/benchmarks/.build}"  # LLAMA_BENCH_DIR: a cache outside the checkout
BIN="$OUT_DIR/llama-bench"
JOBS="${JOBS:-2}"

VERSION="$("$PY" -c 'import llama_cpp; print(llama_cpp.__version__)')"
ISA_ARGS=""
if [[ -x "$ROOT/scripts/llama_cmake_args.sh" ]]; then
    ISA_ARGS="$("$ROOT/scripts/llama_cmake_args.sh")"
fi
[[ -n "$ISA_ARGS" ]] || ISA_ARGS="-DGGML_NATIVE=ON"
STAMP="$VERSION shared $ISA_ARGS ${EXTRA_CMAKE_ARGS:-}"
echo "llama-cpp-python version in venv: $VERSION; ISA options: $ISA_ARGS" >&2

if [[ -x "$BIN" && -x "$OUT_DIR/llama-completion" && -x "$OUT_DIR/llama-perplexity" && -x "$OUT_DIR/llama-quantize" && "${FORCE:-0}" != "1" ]]; then
    built_for="$(cat "$OUT_DIR/llama-bench.stamp" 2>/dev/null || echo unknown)"
    if [[ "$built_for" != "$STAMP" ]]; then
        echo "WARNING: $BIN was built for [$built_for], now [$STAMP]; rerun with FORCE=1 to rebuild" >&2
    fi
    echo "llama-bench already built, skipping build" >&2
    echo "$BIN"
    exit 0
fi

mkdir -p "$OUT_DIR"

# 1. Fetch the exact sdist (pip reuses its cache / an already downloaded file).
find_sdist() {  # the sdist's file name has used both spellings
    for f in "$OUT_DIR/llama_cpp_python-$VERSION.tar.gz" "$OUT_DIR/llama-cpp-python-$VERSION.tar.gz"; do
        [[ -f "$f" ]] && { echo "$f"; return 0; }
    done
    return 1
}
if ! find_sdist >/dev/null; then
    "$PIP" download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$OUT_DIR" >&2
fi
find_sdist >/dev/null || { echo "ERROR: sdist for llama-cpp-python $VERSION not found in $OUT_DIR" >&2; exit 1; }
SDIST="$(find_sdist)"

# 2. Unpack (the sdist's top-level dir is its file name without .tar.gz).
SRC_TOP="$OUT_DIR/$(basename "$SDIST" .tar.gz)"
if [[ ! -f "$SRC_TOP/vendor/llama.cpp/CMakeLists.txt" ]]; then
    tar xzf "$SDIST" -C "$OUT_DIR"
fi
LLAMA_SRC="$SRC_TOP/vendor/llama.cpp"
[[ -f "$LLAMA_SRC/CMakeLists.txt" ]] || { echo "ERROR: no vendor/llama.cpp in $SDIST" >&2; exit 1; }

# 3. Configure + build only the llama-bench target.
BUILD_DIR="$OUT_DIR/build-llama.cpp-$VERSION-$(printf '%s' "$STAMP" | sha256sum | cut -c1-12)"
read -r -a isa_args <<<"$ISA_ARGS"
extra_args=()
if [[ -n "${EXTRA_CMAKE_ARGS:-}" ]]; then
    read -r -a extra_args <<<"$EXTRA_CMAKE_ARGS"
fi

start=$(date +%s)
cmake -S "$LLAMA_SRC" -B "$BUILD_DIR" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=ON \
    "${isa_args[@]}" \
    -DGGML_OPENMP=ON \
    -DGGML_LLAMAFILE=ON \
    -DGGML_BLAS=OFF \
    -DGGML_BACKEND_DL=OFF \
    -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_HIP=OFF -DGGML_SYCL=OFF \
    -DGGML_OPENCL=OFF -DGGML_RPC=OFF \
    -DGGML_CCACHE=OFF \
    -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_COMMON=ON \
    -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_APP=OFF \
    "${extra_args[@]}" >&2
cmake --build "$BUILD_DIR" --config Release --target llama-bench llama-completion llama-perplexity llama-quantize -j "$JOBS" >&2
end=$(date +%s)
echo "built llama-bench in $((end - start)) s" >&2

ln -sf "$BUILD_DIR/bin/llama-bench" "$BIN"  # its shared libraries sit beside it (RPATH)
ln -sf "$BUILD_DIR/bin/llama-completion" "$OUT_DIR/llama-completion"  # real prompts, for phones
ln -sf "$BUILD_DIR/bin/llama-perplexity" "$OUT_DIR/llama-perplexity"  # what melt's perplexity must agree with
ln -sf "$BUILD_DIR/bin/llama-quantize" "$OUT_DIR/llama-quantize"  # a worse quantisation, for benchmarks/quality_compare.py
echo "$STAMP" >"$OUT_DIR/llama-bench.stamp"
"$BIN" --help >/dev/null 2>&1 || { echo "ERROR: $BIN --help failed" >&2; exit 1; }
echo "$BIN"
