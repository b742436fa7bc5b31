// Every kernel the ILGPU backend can load, compiled to PTX without a GPU or a driver (ILGPU's PTX backend
// built directly), and, where NVIDIA's `ptxas` is found ($PVLR_PTXAS or PATH), assembled with `ptxas -v`
// for its registers, shared memory and spills, and where `cuobjdump` sits beside it, disassembled to SASS
// for the FFMA share of its densest loop body. `pvlr bench --ptx` prints the table; PtxTests fails on a
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
using PvlrKernels.Engine;
using PvlrKernels.Kernels;

namespace PvlrKernels.Tools;

public sealed record KernelPtx(string Name, CudaArchitecture Arch, string Ptx);

/// What ptxas -v says of one kernel (null fields where ptxas was not run).
public sealed record KernelAssembly(string Name, string Arch, int? Registers, int? SharedBytes, int? SpillStores,
    int? SpillLoads, string Error, SassStats Sass = null);

/// A kernel's SASS: its instructions (NOPs left out) and FFMAs, and the same two for its hot block: the
/// straight run of code (between labels and branches) that holds the most FFMAs, a GEMM's unrolled k loop.
public sealed record SassStats(int Instructions, int Ffma, int HotInstructions, int HotFfma)
{
    public double HotShare => HotInstructions == 0 ? 0 : (double)HotFfma / HotInstructions;

    /// Counts `cuobjdump -sass` output: a block starts at a label and after a branch, exit or return.
    public static SassStats Parse(string sass)
    {
        int all = 0, ffma = 0, blockAll = 0, blockFfma = 0, hotAll = 0, hotFfma = 0;
        void EndBlock()
        {
            if (blockFfma > hotFfma || (blockFfma == hotFfma && blockAll < hotAll))
                (hotAll, hotFfma) = (blockAll, blockFfma);
            blockAll = blockFfma = 0;
        }
        foreach (var line in sass.Split('\n'))
        {
            if (Regex.IsMatch(line, @"^\s*\.L\w*:")) { EndBlock(); continue; }
            var m = Regex.Match(line, @"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)");
            if (!m.Success) continue;
            string op = m.Groups[1].Value.Split('.')[0];
            if (op == "NOP") continue;
            all++;
            blockAll++;
            if (op == "FFMA")
            {
                ffma++;
                blockFfma++;
            }
            if (op is "BRA" or "EXIT" or "RET" or "BRX" or "JMP" or "JMX" or "CALL") EndBlock();
        }
        EndBlock();
        return new SassStats(all, ffma, hotAll, hotFfma);
    }
}

public static class Ptx
{
    /// PTX ISA 7.8: CUDA 11.8's ptxas rejects ILGPU's default, newer `.version`.
    public static readonly CudaInstructionSet Isa = CudaInstructionSet.ISA_78;

    /// The kernel entry points: every IKernel body through Launcher.Run (generic bodies instantiated over
    /// ViewMem and every op struct their constraint admits), every GEMM tile shape, the warp-per-row forms
    /// (L2 norm, softmax, LayerNorm, row sums, attention) and the alignment groups.
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
        foreach (var warpRows in new[] { typeof(SoftmaxWarp), typeof(LayerNormWarp), typeof(ReduceWarp),
            typeof(AttentionWarp), typeof(ArgTopKWarp) })
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
        using var ctx = Context.Create(b => b.Cuda().EnableAlgorithms().Optimize(IlgpuBackend.Optimization));
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

    /// `cuobjdump` beside ptxas, else from PATH; null where there is none.
    public static string FindCuobjdump(string ptxas)
    {
        var beside = ptxas == null ? null : Path.Combine(Path.GetDirectoryName(ptxas)!, "cuobjdump");
        return beside != null && File.Exists(beside) ? beside
            : (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
                .Select(d => Path.Combine(d, "cuobjdump")).FirstOrDefault(File.Exists);
    }

    static (int code, string output) RunTool(string tool, string args)
    {
        var psi = new ProcessStartInfo(tool, args) { RedirectStandardError = true, RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, err + stdout.Result);
    }

    /// Assembles each kernel with `ptxas -v -arch=sm_XY` (null ptxas: compile-only rows) and, where
    /// cuobjdump is found, counts its SASS. `keepIn`: a folder that keeps each kernel's .ptx, .cubin and
    /// .sass (named after the kernel and arch); by default they go to a temporary folder that is removed.
    public static List<KernelAssembly> Assemble(IEnumerable<KernelPtx> kernels, string ptxas, string keepIn = null)
    {
        var rows = new List<KernelAssembly>();
        var cuobjdump = FindCuobjdump(ptxas);
        var dir = keepIn ?? Path.Combine(Path.GetTempPath(), "pvlr-ptx-" + Environment.ProcessId);
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
                var stem = Path.Combine(dir, keepIn == null ? $"k{i++}"
                    : $"{Regex.Replace(k.Name, @"[^A-Za-z0-9_.]+", "_").Trim('_')}.{sm}");
                File.WriteAllText(stem + ".ptx", k.Ptx);
                var (code, err) = RunTool(ptxas, $"-v -arch={sm} -o \"{stem}.cubin\" \"{stem}.ptx\"");
                SassStats sass = null;
                if (code == 0 && cuobjdump != null)
                {
                    var (sassCode, listing) = RunTool(cuobjdump, $"-sass \"{stem}.cubin\"");
                    if (sassCode == 0)
                    {
                        sass = SassStats.Parse(listing);
                        if (keepIn != null) File.WriteAllText(stem + ".sass", listing);
                    }
                }
                int? Grab(string pattern) { var m = Regex.Match(err,
                    pattern); return m.Success ? int.Parse(m.Groups[1].Value) : null; }
                rows.Add(new KernelAssembly(k.Name, sm, Grab(@"Used (\d+) registers"), Grab(@"(\d+) bytes smem") ?? 0,
                    Grab(@"(\d+) bytes spill stores"), Grab(@"(\d+) bytes spill loads"),
                    code == 0 ? null : err.Trim().Split('\n').Last(), sass));
            }
        }
        finally
        {
            if (keepIn == null) Directory.Delete(dir, true);
        }
        return rows;
    }

    public static string Table(List<KernelAssembly> rows, string ptxas)
    {
        var sb = new System.Text.StringBuilder($"{rows.Select(r => r.Name).Distinct().Count()} kernels compiled to "
            + $"PTX ISA 7.8 for {string.Join(", ", rows.Select(r => r.Arch).Distinct())}; "
                + (ptxas != null
                    ? $"assembled with {ptxas} -v" : "no ptxas found ($PVLR_PTXAS or PATH): compiled only")
                        + (rows.Any(r => r.Sass != null) ? "; SASS counted with cuobjdump (hot block: the straight "
                            + "run of code with the most FFMAs)" : "")
                        + "\n\n| kernel | arch | registers | shared bytes | spill stores | spill loads "
                            + "| SASS instructions | FFMA | hot block FFMA share | error "
                            + "|\n|---|---|---|---|---|---|---|---|---|---|\n");
        foreach (var r in rows)
            sb.AppendLine($"| {r.Name} | {r.Arch} | {r.Registers?.ToString() ?? "—"} | "
                + $"{r.SharedBytes?.ToString() ?? "—"} | {r.SpillStores?.ToString() ?? "—"} | "
                + $"{r.SpillLoads?.ToString() ?? "—"} | {r.Sass?.Instructions.ToString() ?? "—"} | "
                + $"{r.Sass?.Ffma.ToString() ?? "—"} | "
                + (r.Sass == null ? "—" : $"{100 * r.Sass.HotShare:F0} % ({r.Sass.HotFfma}/{r.Sass.HotInstructions})")
                + $" | {r.Error ?? ""} |");
        return sb.ToString();
    }
}
