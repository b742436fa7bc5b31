// The suite as a program: `PvlrKernels.Tests [REGEX]` runs the NUnit tests in-process, without dotnet
// test, on a machine that has only the self-contained publish (the GPU machines have no .NET SDK; see
// benchmarks/device/run.sh). REGEX filters on the full test name, e.g. '\("cuda"\)' for every case of
// every backend-parameterised fixture on CUDA. Prints each failure, then "N passed, N failed, N skipped".
// `dotnet test` does not use this entry point.
using NUnit.Framework.Api;
using NUnit.Framework.Interfaces;
using NUnit.Framework.Internal;
using System.Text.RegularExpressions;

namespace PvlrKernels.Tests;

public static class DeviceRunner
{
    // Writes to the process's own stdout: NUnit redirects Console.Out while a test runs, and TestFinished is
    // called inside that redirection, so Console.WriteLine here printed nothing (every ok and FAIL line lost).
    sealed class Listener(TextWriter stdout) : ITestListener
    {
        public int Passed, Failed, Skipped;
        public void TestStarted(ITest test) { }
        public void TestOutput(TestOutput output) { }
        public void SendMessage(TestMessage message) { }
        public void TestFinished(ITestResult r)
        {
            if (r.Test.IsSuite) return;
            switch (r.ResultState.Status)
            {
                case TestStatus.Passed: Passed++; stdout.WriteLine($"  ok    {r.FullName} ({r.Duration:F2} s)"); break;
                case TestStatus.Failed: Failed++; stdout.WriteLine($"  FAIL  {r.FullName}\n        "
                    + $"{r.Message?.Replace("\n", "\n        ")}"); break;
                default: Skipped++; break;
            }
        }
    }

    sealed class NameFilter(string pattern) : TestFilter
    {
        readonly Regex re = new(pattern);
        public override bool Match(ITest test) => re.IsMatch(test.FullName);
        public override TNode AddToXml(TNode parentNode, bool recursive) => parentNode.AddElement("test", pattern);
    }

    public static int Main(string[] args)
    {
        var runner = new NUnitTestAssemblyRunner(new DefaultTestAssemblyBuilder());
        runner.Load(typeof(DeviceRunner).Assembly, new Dictionary<string, object>());
        ITestFilter filter = args.Length > 0 ? new NameFilter(args[0]) : TestFilter.Empty;
        var stdout = new StreamWriter(Console.OpenStandardOutput()) { AutoFlush = true };
        var listener = new Listener(stdout);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        Console.WriteLine($"Vector512 hardware-accelerated: "
            + $"{System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated}, AVX2: "
                + $"{System.Runtime.Intrinsics.X86.Avx2.IsSupported}");
        runner.Run(listener, filter);
        Console.WriteLine($"{listener.Passed} passed, {listener.Failed} failed, {listener.Skipped} skipped "
            + $"({sw.Elapsed.TotalSeconds:F1} s)");
        return listener.Failed == 0 && listener.Passed > 0 ? 0 : 1;
    }
}
