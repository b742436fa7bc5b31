namespace PvlrKernels.Benchmarks; class P{static void Main(){}}
