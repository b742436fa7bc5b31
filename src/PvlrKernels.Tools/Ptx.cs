// Every kernel the ILGPU backend can load, compiled to PTX without a GPU or a driver (ILGPU's PTX backend
// built directly), and, where NVIDIA's `ptxas` is found ($PVLR_PTXAS or PATH), assembled with `ptxas -v`
// for its registers, shared memory and spills. `pvlr bench --ptx` prints the table; PtxTests fails on a
// kernel that does not compile, does not assemble, or spills.
using System.Diagnostics;
using System.Reflection;
using System.Text.RegularExpressions;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using PvlrKernels.Kernels;

namespace PvlrKernels.Tools;

public sealed record KernelPtx(string Name, CudaArchitecture Arch, string Ptx);

/// What ptxas -v says of one kernel (null fields where ptxas was not run).
public sealed record KernelAssembly(string Name, string Arch, int? Registers, int? SharedBytes, int? SpillStores,
    int? SpillLoads, string Error);

public static class Ptx
{
    /// PTX ISA 7.8: CUDA 11.8's ptxas rejects ILGPU's default, newer `.version`.
    public static readonly CudaInstructionSet Isa = CudaInstructionSet.ISA_78;

    /// The kernel entry points: every IKernel body through Launcher.Run (generic bodies instantiated over
    /// ViewMem and every op struct their constraint admits), every GEMM tile shape, the warp-per-row L2 norm.
    public static IEnumerable<(string name, MethodInfo method, bool explicitGroups)> EntryPoints()
    {
        var asm = typeof(IKernel).Assembly;
        var structs = asm.GetTypes().Where(t => t.IsValueType && !t.IsGenericTypeDefinition).ToArray();
        IEnumerable<Type> Admitted(Type parameter) =>
            parameter.GetGenericParameterConstraints().Any(c => c == typeof(IMem)) ? [typeof(ViewMem)]
            : structs.Where(s => parameter.GetGenericParameterConstraints().All(c => c.IsAssignableFrom(s)));
        var run = typeof(Launcher).GetMethod(nameof(Launcher.Run))!;
        foreach (var k in asm.GetTypes().Where(t => t.IsValueType && typeof(IKernel).IsAssignableFrom(t)
            || (t.IsGenericTypeDefinition && t.GetInterfaces().Contains(typeof(IKernel)))).OrderBy(t => t.Name))
        {
            IEnumerable<Type[]> args = [[]];
            foreach (var p in k.IsGenericTypeDefinition ? k.GetGenericArguments() : [])
                args = args.SelectMany(a => Admitted(p).Select(t => a.Append(t).ToArray())).ToList();
            foreach (var a in args)
            {
                var body = k.IsGenericTypeDefinition ? k.MakeGenericType(a) : k;
                var typeArgs = string.Join(",", a.Where(t => t != typeof(ViewMem)).Select(t => t.Name));
                string name = k.IsGenericTypeDefinition ? $"{k.Name[..k.Name.IndexOf('`')]}<{typeArgs}>" : k.Name;
                yield return (name.Replace("<>", ""), run.MakeGenericMethod(body), false);
            }
        }
        var blocked = typeof(GemmKernels).GetMethod(nameof(GemmKernels.Blocked))!;
        foreach (var shape in structs.Where(s => typeof(IGemmShape).IsAssignableFrom(s)).OrderBy(s => s.Name))
            yield return ($"GemmBlocked<{shape.Name}>", blocked.MakeGenericMethod(shape), true);
        yield return ("L2NormWarp.Rows", typeof(L2NormWarp).GetMethod(nameof(L2NormWarp.Rows))!, true);
        foreach (var warpRows in new[] { typeof(SoftmaxWarp), typeof(LayerNormWarp), typeof(ReduceWarp) })
            foreach (var m in warpRows.GetMethods(BindingFlags.Public | BindingFlags.Static).OrderBy(m => m.Name))
                yield return ($"{warpRows.Name}.{m.Name}", m, true);
        var align = typeof(SequenceAlignmentGroups).GetMethod(nameof(SequenceAlignmentGroups.Forward))!;
        foreach (var cell in structs.Where(s => typeof(IAlignCell).IsAssignableFrom(s)).OrderBy(s => s.Name))
            yield return ($"SequenceAlignmentGroups.Forward<{cell.Name}>", align.MakeGenericMethod(cell), true);
        yield return ("SequenceAlignmentGroups.FsdBackward",
            typeof(SequenceAlignmentGroups).GetMethod(nameof(SequenceAlignmentGroups.FsdBackward))!, true);
    }

    /// Compiles every entry point for each architecture; a kernel that does not compile throws, naming it.
    public static List<KernelPtx> CompileAll(params CudaArchitecture[] archs)
    {
        var result = new List<KernelPtx>();
        using var ctx = Context.Create(b => b.Cuda().EnableAlgorithms());
        foreach (var arch in archs)
        {
            var backend = new PTXBackend(ctx, new CudaCapabilityContext(arch), arch, Isa, null);
            foreach (var (name, method, explicitGroups) in EntryPoints())
            {
                var entry = explicitGroups
                    ? EntryPointDescription.FromExplicitlyGroupedKernel(method)
                    : EntryPointDescription.FromImplicitlyGroupedKernel(method);
                try { result.Add(new KernelPtx(name, arch, ((PTXCompiledKernel)backend.Compile(entry,
                    new KernelSpecialization())).PTXAssembly)); }
                catch (Exception e) { throw new InvalidOperationException($"{name} does not compile to PTX for "
                    + $"{arch}: {e.Message}", e); }
            }
        }
        return result;
    }

    /// `ptxas` from $PVLR_PTXAS, else from PATH; null where there is none.
    public static string FindPtxas()
    {
        var env = Environment.GetEnvironmentVariable("PVLR_PTXAS");
        if (!string.IsNullOrEmpty(env)) return File.Exists(env) ? env : null;
        return (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d,
            "ptxas")).FirstOrDefault(File.Exists);
    }

    static string SmName(CudaArchitecture a) => $"sm_{a.Major}{a.Minor}";

    /// Assembles each kernel with `ptxas -v -arch=sm_XY` (null ptxas: compile-only rows).
    public static List<KernelAssembly> Assemble(IEnumerable<KernelPtx> kernels, string ptxas)
    {
        var rows = new List<KernelAssembly>();
        var dir = Path.Combine(Path.GetTempPath(), "pvlr-ptx-" + Environment.ProcessId);
        Directory.CreateDirectory(dir);
        try
        {
            int i = 0;
            foreach (var k in kernels)
            {
                string sm = SmName(k.Arch);
                if (ptxas == null)
                {
                    rows.Add(new KernelAssembly(k.Name, sm, null, null, null, null, null));
                    continue;
                }
                var file = Path.Combine(dir, $"k{i++}.ptx");
                File.WriteAllText(file, k.Ptx);
                var psi = new ProcessStartInfo(ptxas,
                    $"-v -arch={sm} -o /dev/null \"{file}\"") { RedirectStandardError = true,
                    RedirectStandardOutput = true };
                using var p = Process.Start(psi)!;
                string err = p.StandardError.ReadToEnd() + p.StandardOutput.ReadToEnd();
                p.WaitForExit();
                int? Grab(string pattern) { var m = Regex.Match(err,
                    pattern); return m.Success ? int.Parse(m.Groups[1].Value) : null; }
                rows.Add(new KernelAssembly(k.Name, sm, Grab(@"Used (\d+) registers"), Grab(@"(\d+) bytes smem") ?? 0,
                    Grab(@"(\d+) bytes spill stores"), Grab(@"(\d+) bytes spill loads"),
                    p.ExitCode == 0 ? null : err.Trim().Split('\n').Last()));
            }
        }
        finally { Directory.Delete(dir, true); }
        return rows;
    }

    public static string Table(List<KernelAssembly> rows, string ptxas)
    {
        var sb = new System.Text.StringBuilder($"{rows.Select(r => r.Name).Distinct().Count()} kernels compiled to "
            + $"PTX ISA 7.8 for {string.Join(", ", rows.Select(r => r.Arch).Distinct())}; "
                + (ptxas != null
                    ? $"assembled with {ptxas} -v" : "no ptxas found ($PVLR_PTXAS or PATH): compiled only")
                        + "\n\n| kernel | arch | registers | shared bytes | spill stores | spill loads | error "
                            + "|\n|---|---|---|---|---|---|---|\n");
        foreach (var r in rows)
            sb.AppendLine($"| {r.Name} | {r.Arch} | {r.Registers?.ToString() ?? "—"} | "
                + $"{r.SharedBytes?.ToString() ?? "—"} | {r.SpillStores?.ToString() ?? "—"} | "
                + $"{r.SpillLoads?.ToString() ?? "—"} | {r.Error ?? ""} |");
        return sb.ToString();
    }
}
