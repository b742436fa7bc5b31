// The CUDA path checked without a GPU: every kernel entry point the ILGPU backend can load compiles to
// PTX (ISA 7.8) for sm_80 and sm_90, and where NVIDIA's ptxas is found ($PVLR_PTXAS or PATH) it
// assembles with no error and no spill.
using ILGPU.Runtime.Cuda;
using NUnit.Framework;
using PvlrKernels.Tools;

namespace PvlrKernels.Tests;

public sealed class PtxTests
{
    [Test]
    public void EveryKernelCompilesToPtxAndAssemblesWithoutSpills()
    {
        var kernels = Ptx.CompileAll(CudaArchitecture.SM_80, CudaArchitecture.SM_90);
        var names = kernels.Select(k => k.Name).Distinct().ToList();
        Assert.That(names, Does.Contain("UnaryFwd<SigmoidOp>").And.Contain("BinaryGrad<BceOp>")
            .And.Contain("GemmBlocked<Gemm16>").And.Contain("L2NormWarp.Rows"));
        Assert.That(names, Has.Count.GreaterThanOrEqualTo(60), string.Join(", ", names));
        foreach (var k in kernels)
        {
            Assert.That(k.Ptx, Does.Contain(".version 7.8"), k.Name);
            Assert.That(k.Ptx, Does.Contain(".entry"), k.Name);
        }
        var ptxas = Ptx.FindPtxas();
        if (ptxas == null) Assert.Pass($"{names.Count} kernels compile to PTX; no ptxas here to assemble them");
        var rows = Ptx.Assemble(kernels, ptxas);
        Assert.That(rows.Where(r => r.Error != null).Select(r => $"{r.Name} {r.Arch}: {r.Error}"), Is.Empty);
        Assert.That(rows.Where(r => r.SpillStores > 0 || r.SpillLoads > 0).Select(r => $"{r.Name} {r.Arch}"),
            Is.Empty, "spills");
    }
}
