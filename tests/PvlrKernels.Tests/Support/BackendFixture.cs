// One suite, every backend: "cpu" (managed), "ilgpu-cpu" (the ILGPU kernels on the CPU emulator,
// tiny shapes only) and "cuda" (only where a CUDA device exists; otherwise those cases are ignored).
using System.Diagnostics;
using NUnit.Framework;
using PvlrKernels.Engine;

namespace PvlrKernels.Tests;

public static class Backends
{
    public static readonly string[] All = { "cpu", "ilgpu-cpu", "cuda" };
    static readonly Dictionary<string, Backend> cache = new();
    static readonly object gate = new();

    public static Backend Get(string name)
    {
        lock (gate)
        {
            if (cache.TryGetValue(name, out var b)) return b;
            if (name == "cuda" && !IlgpuBackend.CudaAvailable()) Assert.Ignore("no CUDA device on this machine");
            b = name switch
            {
                "cpu" => new CpuBackend(),
                "ilgpu-cpu" => IlgpuBackend.CreateCpuEmulator(),
                "cuda" => IlgpuBackend.CreateCuda(),
                _ => throw new ArgumentException(name)
            };
            cache[name] = b;
            return b;
        }
    }
}

/// Turns ILGPU's host-side Trace.Assert into a catchable exception instead of a process kill.
[SetUpFixture]
public sealed class GlobalSetup
{
    sealed class Throwing : TraceListener
    {
        public override void Write(string m) { }
        public override void WriteLine(string m) { }
        public override void Fail(string m, string d) => throw new InvalidOperationException("assert: " + m + " " + d);
    }
    [OneTimeSetUp] public void Setup() { Trace.Listeners.Clear(); Trace.Listeners.Add(new Throwing()); }
}

public static class TestData
{
    /// n floats uniform in [-scale, scale), reproducible from the seed.
    public static float[] Rand(int n, int seed, double scale = 1)
    {
        var r = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)((r.NextDouble() * 2 - 1) * scale);
        return a;
    }

    /// The CLI run in this process: its exit code and what it wrote to stderr and to stdout.
    public static (int rc, string err, string output) RunCli(params string[] args)
    {
        var err = new StringWriter();
        var output = new StringWriter();
        var oldErr = Console.Error;
        var oldOut = Console.Out;
        Console.SetError(err);
        Console.SetOut(output);
        try { return (Cli.Program.Main(args), err.ToString(), output.ToString()); }
        finally
        {
            Console.SetError(oldErr);
            Console.SetOut(oldOut);
        }
    }
}

public static class Check
{
    /// got holds expect's floats bit for bit (signed zeros and NaN included).
    public static void SameBits(float[] got, float[] expect, string what = null) =>
        Assert.That(got.Select(BitConverter.SingleToInt32Bits),
            Is.EqualTo(expect.Select(BitConverter.SingleToInt32Bits)), what);

    /// |got - ref| <= atol + rtol |ref| elementwise, with the first failures reported.
    public static void Close(ReadOnlySpan<float> got, ReadOnlySpan<double> expect, double atol, double rtol,
        string what)
    {
        Assert.That(got.Length, Is.EqualTo(expect.Length), $"{what}: length");
        int bad = 0;
        var msg = new System.Text.StringBuilder();
        double worst = 0;
        for (int i = 0; i < got.Length; i++)
        {
            double d = Math.Abs(got[i] - expect[i]), tol = atol + rtol * Math.Abs(expect[i]);
            if (!(d <= tol))
            {
                if (bad < 5) msg.Append($" [{i}] got {got[i]:G9} want {expect[i]:G9};");
                bad++;
                worst = Math.Max(worst, d);
            }
        }
        Assert.That(bad, Is.EqualTo(0), $"{what}: {bad}/{got.Length} outside tolerance (worst {worst:G3}):{msg}");
    }
    public static void Close(ReadOnlySpan<float> got, ReadOnlySpan<float> expect, double atol, double rtol, string what)
    {
        var e = new double[expect.Length];
        for (int i = 0; i < e.Length; i++) e[i] = expect[i];
        Close(got, e, atol, rtol, what);
    }
}
