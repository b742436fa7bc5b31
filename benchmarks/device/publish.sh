#!/usr/bin/env bash
# Builds what the GPU machine runs: the CLI, the test suite (as a program, see
# tests/PvlrKernels.Tests/Support/DeviceRunner.cs) and the BenchmarkDotNet benchmarks published self-contained for linux-x64, untrimmed (trimming
# breaks ILGPU), into one folder, packed as .device/pvlr.tar.gz (git-ignored, about 60 MB). Copy the
# repository with that file to the GPU machine and run `bash benchmarks/device/run.sh` from its root.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .pub/pvlr && mkdir -p .device
dotnet publish src/PvlrKernels.Cli -c Release -r linux-x64 --self-contained -p:PublishTrimmed=false -o .pub/pvlr
dotnet publish tests/PvlrKernels.Tests -c Release -r linux-x64 --self-contained -p:PublishTrimmed=false -p:UseAppHost=true -o .pub/pvlr
dotnet publish benchmarks/PvlrKernels.Benchmarks -c Release -r linux-x64 --self-contained -p:PublishTrimmed=false -o .pub/pvlr
tar czf .device/pvlr.tar.gz -C .pub pvlr
ls -l .device/pvlr.tar.gz
