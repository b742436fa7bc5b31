#!/usr/bin/env bash
# Runs on the GPU machine (no .NET there): unpacks the self-contained build from publish.sh, runs every
# test case on the "cuda" backend, then `pvlr bench` on CUDA at the paper and demo shapes, a sweep of the
# GEMM tile variants, and one profiled step and inference (PVLR_PROFILE=1, per-kernel times).
# Results go to $OUT when it is set, else out/device.
# `bdn` runs the BenchmarkDotNet benchmarks in-process on CPU and CUDA (not part of `all`).
# Usage: bash benchmarks/device/run.sh [tests|bench|sweep|profile|bdn|all]...
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-out/device}; mkdir -p "$out" .pub
rm -rf .pub/pvlr && tar xzf .device/pvlr.tar.gz -C .pub
pvlr=.pub/pvlr/pvlr
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
rc=0
for what in "${@:-all}"; do
  if [ "$what" = tests ] || [ "$what" = all ]; then
    # every case whose first argument is "cuda": ("cuda") fixtures and ("cuda", ...) test cases
    (cd .pub/pvlr && ./PvlrKernels.Tests '\("cuda"[,)]') > "$out/tests-cuda.txt" 2>&1 || rc=1
    grep -v '^  ok ' "$out/tests-cuda.txt" | tail -n 30
  fi
  if [ "$what" = bench ] || [ "$what" = all ]; then
    $pvlr bench --device cuda --preset paper --steps 5 --out "$out/bench-cuda-paper.md" 2>/dev/null || rc=1
    $pvlr bench --device cuda --preset demo --only step,infer --steps 5 --out "$out/bench-cuda-demo.md" 2>/dev/null || rc=1
  fi
  if [ "$what" = sweep ] || [ "$what" = all ]; then
    for tile in 128 128k16 64; do
      echo "PVLR_GEMM_TILE=$tile"
      PVLR_GEMM_TILE=$tile $pvlr bench --device cuda --preset paper --only gemm,conv 2>/dev/null | grep '^| [SF]' || rc=1
    done
  fi
  if [ "$what" = profile ] || [ "$what" = all ]; then
    PVLR_PROFILE=1 $pvlr bench --device cuda --preset paper --only step,infer --steps 2 > "$out/profile-cuda-paper.txt" 2>&1 || rc=1
    grep -v '^  step' "$out/profile-cuda-paper.txt" | tail -n 45
  fi
  if [ "$what" = bdn ]; then
    (cd "$out" && "$OLDPWD/.pub/pvlr/PvlrKernels.Benchmarks" --inprocess --filter '*' > bdn.txt 2>&1) || rc=1
    grep -E '^\|' "$out/bdn.txt" | tail -n 12
  fi
done
exit $rc
