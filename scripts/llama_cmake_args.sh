#!/usr/bin/env bash
# Prints the CMake options melt builds llama.cpp with (llama-cpp-python and llama-bench alike,
# so the fidelity benchmark compares the same code).
#
# Why not a plain native build: on CPUs with AMX (Sapphire Rapids and later), the vendored
# llama.cpp's AMX matmul (ggml_backend_amx_mul_mat) segfaults on Q4_K models in our VMs even
# though the kernel grants AMX tile permission. There we build for the CPU's AVX-512 features
# explicitly, without AMX. Elsewhere: the default native build.
set -euo pipefail
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $flags " == *" $1 "* ]]; }
if has amx_int8; then
  args="-DGGML_NATIVE=OFF"
  for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx512f:AVX512 avx512vbmi:AVX512_VBMI \
              avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16 avx_vnni:AVX_VNNI; do
    has "${pair%%:*}" && args+=" -DGGML_${pair#*:}=ON"
  done
  echo "$args"
else
  echo ""
fi
