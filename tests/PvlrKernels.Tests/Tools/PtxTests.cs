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
        // the 128x128 GEMM: at most 128 registers (two 256-thread groups fit an SM's register file) and, where
        // cuobjdump is found, an unrolled k loop that is at least 85 % FFMA
        foreach (var g in rows.Where(r => r.Name == "GemmBlocked<Gemm16>"))
        {
            Assert.That(g.Registers, Is.LessThanOrEqualTo(128), $"{g.Name} {g.Arch} registers");
            if (g.Sass != null)
                Assert.That(g.Sass.HotShare, Is.GreaterThanOrEqualTo(0.85),
                    $"{g.Name} {g.Arch}: hot block {g.Sass.HotFfma} FFMA of {g.Sass.HotInstructions}");
        }
    }

    /// The SASS count on a listing shaped as cuobjdump prints it: NOPs left out, blocks cut at labels and
    /// after branches, the hot block the one with the most FFMAs.
    [Test]
    public void SassCountsFindTheHotBlock()
    {
        const string listing = """
                    Function : k
            .text.k:
                    /*0000*/                   MOV R1, c[0x0][0x28] ;        /* 0x00000a0000017a02 */
                    /*0010*/                   FFMA R2, R3, R4, R2 ;         /* 0x0000000403027223 */
            .L_x_1:
                    /*0020*/                   LDS.128 R8, [R20] ;           /* 0x0000000014087984 */
                    /*0030*/                   FFMA R2, R8, R9, R2 ;         /* 0x0000000908027223 */
                    /*0040*/                   FFMA R3, R8, R10, R3 ;        /* 0x0000000a08037223 */
                    /*0050*/                   FFMA R4, R8, R11, R4 ;        /* 0x0000000b08047223 */
                    /*0060*/                   NOP ;                         /* 0x0000000000007918 */
                    /*0070*/               @P0 BRA `(.L_x_1) ;               /* 0xfffffff000000947 */
                    /*0080*/                   STG.E [R6.64], R2 ;           /* 0x0000000206007986 */
                    /*0090*/                   EXIT ;                        /* 0x000000000000794d */
            """;
        var s = SassStats.Parse(listing);
        Assert.That((s.Instructions, s.Ffma, s.HotInstructions, s.HotFfma), Is.EqualTo((9, 4, 5, 3)));
        Assert.That(s.HotShare, Is.EqualTo(0.6).Within(1e-12));
    }
}
