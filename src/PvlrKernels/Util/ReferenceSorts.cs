// The two sort orders the original code's results depend on when keys tie, restated so that our picks
// equal the original's index for index. Neither is stable, so "equal keys in input order" is not enough:
//
// * numpy 1.24's default argsort (kind='quicksort', numpy/core/src/npysort/quicksort.cpp aquicksort_):
//   an introsort. Partitions of more than 16 elements are split around the median of three (first, middle,
//   last); shorter ones are insertion-sorted; past a depth of 2*floor(log2 n) a partition is heap-sorted
//   (aheapsort_). Its `less` puts NaN after every number. The evaluator sorts scores and tIoUs with
//   `argsort()[::-1]` (eval_detection.py compute_average_precision_detection), the classification mAP
//   with `np.argsort(-conf)` (classificationMAP.py getAP).
// * torch 1.13's CPU sort along a dimension (aten/src/ATen/native/cpu/SortingKernel.cpp sort_kernel):
//   libstdc++'s std::sort over (value, index) pairs with KeyValueCompDesc, `(isnan(a) && !isnan(b)) ||
//   a > b`: an introsort whose pivot is the median of (first+1, middle, last-1) moved to first, an
//   unguarded Hoare partition, heap sort past a depth of 2*floor(log2 n), and a final insertion sort
//   over runs of 16. The mining sorts with `scores.sort(descending=True, dim=1)` (loss.py:128).
//
// Both are generic over float and double: the comparisons are the same on a float widened to double, and
// the median-of-three and heap steps only compare, so one body serves both widths.
using System.Numerics;

namespace PvlrKernels.Util;

public static class NumpySort
{
    const int SmallQuicksort = 15;     // npysort_common.h SMALL_QUICKSORT

    // npysort_common.h DOUBLE_LT / FLOAT_LT: NaN sorts last
    static bool Less<T>(T a, T b) where T : IFloatingPointIeee754<T> => a < b || (T.IsNaN(b) && !T.IsNaN(a));

    /// np.argsort(v) with numpy 1.24's default kind: indices that sort v ascending, NaN last.
    public static int[] Argsort<T>(ReadOnlySpan<T> v) where T : IFloatingPointIeee754<T>
    {
        var idx = Identity(v.Length);
        if (idx.Length > 1) Quicksort(v, idx);
        return idx;
    }

    /// np.argsort(v, kind='heapsort'): the fallback the introsort takes past its depth limit, whole.
    public static int[] ArgsortHeap<T>(ReadOnlySpan<T> v) where T : IFloatingPointIeee754<T>
    {
        var idx = Identity(v.Length);
        HeapSort(v, idx);
        return idx;
    }

    /// np.argsort(v)[::-1]: the evaluator's descending order (NaN first).
    public static int[] ArgsortReversed<T>(ReadOnlySpan<T> v) where T : IFloatingPointIeee754<T>
    {
        var idx = Argsort(v);
        Array.Reverse(idx);
        return idx;
    }

    static void Quicksort<T>(ReadOnlySpan<T> v, int[] tosort) where T : IFloatingPointIeee754<T>
    {
        int num = tosort.Length;
        var stack = new Stack<(int lo, int hi, int depth)>();
        int pl = 0, pr = num - 1;
        int cdepth = 2 * MostSignificantBit(num);
        while (true)
        {
            if (cdepth < 0)
            {
                HeapSort(v, tosort.AsSpan(pl, pr - pl + 1));
            }
            else
            {
                while (pr - pl > SmallQuicksort)
                {
                    int pm = pl + ((pr - pl) >> 1);
                    if (Less(v[tosort[pm]], v[tosort[pl]])) Swap(tosort, pm, pl);
                    if (Less(v[tosort[pr]], v[tosort[pm]])) Swap(tosort, pr, pm);
                    if (Less(v[tosort[pm]], v[tosort[pl]])) Swap(tosort, pm, pl);
                    T vp = v[tosort[pm]];
                    int pi = pl, pj = pr - 1;
                    Swap(tosort, pm, pj);
                    while (true)
                    {
                        do ++pi;
                        while (Less(v[tosort[pi]], vp));
                        do --pj;
                        while (Less(vp, v[tosort[pj]]));
                        if (pi >= pj) break;
                        Swap(tosort, pi, pj);
                    }
                    Swap(tosort, pi, pr - 1);
                    // the larger side waits on the stack with the depth both sides get
                    --cdepth;
                    if (pi - pl < pr - pi)
                    {
                        stack.Push((pi + 1, pr, cdepth));
                        pr = pi - 1;
                    }
                    else
                    {
                        stack.Push((pl, pi - 1, cdepth));
                        pl = pi + 1;
                    }
                }
                for (int i = pl + 1; i <= pr; i++)
                {
                    int vi = tosort[i];
                    T key = v[vi];
                    int j = i;
                    while (j > pl && Less(key, v[tosort[j - 1]]))
                    {
                        tosort[j] = tosort[j - 1];
                        j--;
                    }
                    tosort[j] = vi;
                }
            }
            if (stack.Count == 0) break;
            (pl, pr, cdepth) = stack.Pop();
        }
    }

    /// aheapsort_: a max-heap with 1-based indexing over the index array.
    static void HeapSort<T>(ReadOnlySpan<T> v, Span<int> a) where T : IFloatingPointIeee754<T>
    {
        int n = a.Length;
        // a[k - 1] is the heap's element k
        for (int l = n >> 1; l > 0; --l)
        {
            int tmp = a[l - 1], i = l, j = l << 1;
            while (j <= n)
            {
                if (j < n && Less(v[a[j - 1]], v[a[j]])) j++;
                if (!Less(v[tmp], v[a[j - 1]])) break;
                a[i - 1] = a[j - 1];
                i = j;
                j += j;
            }
            a[i - 1] = tmp;
        }
        while (n > 1)
        {
            int tmp = a[n - 1];
            a[n - 1] = a[0];
            n--;
            int i = 1, j = 2;
            while (j <= n)
            {
                if (j < n && Less(v[a[j - 1]], v[a[j]])) j++;
                if (!Less(v[tmp], v[a[j - 1]])) break;
                a[i - 1] = a[j - 1];
                i = j;
                j += j;
            }
            a[i - 1] = tmp;
        }
    }

    /// 0, 1, ..., n - 1: the index array both sorts permute.
    internal static int[] Identity(int n)
    {
        var idx = new int[n];
        for (int i = 0; i < n; i++) idx[i] = i;
        return idx;
    }

    /// npy_get_msb: floor(log2 n) for n >= 1.
    static int MostSignificantBit(int n)
    {
        int d = 0;
        while ((n >>= 1) != 0) d++;
        return d;
    }

    static void Swap(int[] a, int i, int j) => (a[i], a[j]) = (a[j], a[i]);
}

public static class TorchSort
{
    const int Threshold = 16;          // libstdc++ _S_threshold

    // KeyValueCompDesc: NaN first, then larger values
    static bool Before<T>(T a, T b) where T : IFloatingPointIeee754<T> => (T.IsNaN(a) && !T.IsNaN(b)) || a > b;

    /// The index row of `x.sort(descending=True)` on CPU torch 1.13 for one contiguous row.
    public static int[] DescendingOrder<T>(ReadOnlySpan<T> x) where T : IFloatingPointIeee754<T>
    {
        var key = x.ToArray();
        var idx = NumpySort.Identity(key.Length);
        var p = new Pairs<T>(key, idx);
        if (key.Length > 0)
        {
            IntroLoop(p, 0, key.Length, 2 * FloorLog2(key.Length));
            FinalInsertionSort(p, 0, key.Length);
        }
        return idx;
    }

    /// The (value, index) pairs the composite accessor moves together.
    readonly struct Pairs<T>(T[] key, int[] idx) where T : IFloatingPointIeee754<T>
    {
        public readonly T[] Key = key;
        public readonly int[] Idx = idx;
        public bool Less(int i, int j) => Before(Key[i], Key[j]);
        public bool LessThan(int i, T k) => Before(Key[i], k);
        public bool LessThan(T k, int i) => Before(k, Key[i]);
        public void Swap(int i, int j)
        {
            (Key[i], Key[j]) = (Key[j], Key[i]);
            (Idx[i], Idx[j]) = (Idx[j], Idx[i]);
        }
        public void Move(int to, int from)
        {
            Key[to] = Key[from];
            Idx[to] = Idx[from];
        }
        public void Put(int to, (T k, int i) v)
        {
            Key[to] = v.k;
            Idx[to] = v.i;
        }
        public (T k, int i) Get(int i) => (Key[i], Idx[i]);
    }

    static void IntroLoop<T>(Pairs<T> p, int first, int last, int depth) where T : IFloatingPointIeee754<T>
    {
        while (last - first > Threshold)
        {
            if (depth == 0)
            {
                HeapSort(p, first, last);
                return;
            }
            --depth;
            int cut = PartitionPivot(p, first, last);
            IntroLoop(p, cut, last, depth);
            last = cut;
        }
    }

    static int PartitionPivot<T>(Pairs<T> p, int first, int last) where T : IFloatingPointIeee754<T>
    {
        int mid = first + (last - first) / 2;
        MoveMedianToFirst(p, first, first + 1, mid, last - 1);
        // __unguarded_partition(first + 1, last, pivot = first)
        int lo = first + 1, hi = last;
        while (true)
        {
            while (p.Less(lo, first)) ++lo;
            --hi;
            while (p.Less(first, hi)) --hi;
            if (!(lo < hi)) return lo;
            p.Swap(lo, hi);
            ++lo;
        }
    }

    static void MoveMedianToFirst<T>(Pairs<T> p, int result, int a, int b, int c) where T : IFloatingPointIeee754<T>
    {
        if (p.Less(a, b))
        {
            if (p.Less(b, c)) p.Swap(result, b);
            else if (p.Less(a, c)) p.Swap(result, c);
            else p.Swap(result, a);
        }
        else if (p.Less(a, c)) p.Swap(result, a);
        else if (p.Less(b, c)) p.Swap(result, c);
        else p.Swap(result, b);
    }

    static void FinalInsertionSort<T>(Pairs<T> p, int first, int last) where T : IFloatingPointIeee754<T>
    {
        if (last - first > Threshold)
        {
            InsertionSort(p, first, first + Threshold);
            for (int i = first + Threshold; i < last; i++) UnguardedLinearInsert(p, i);
        }
        else InsertionSort(p, first, last);
    }

    static void InsertionSort<T>(Pairs<T> p, int first, int last) where T : IFloatingPointIeee754<T>
    {
        if (first == last) return;
        for (int i = first + 1; i < last; i++)
        {
            if (p.Less(i, first))
            {
                var v = p.Get(i);
                for (int j = i; j > first; j--) p.Move(j, j - 1);
                p.Put(first, v);
            }
            else UnguardedLinearInsert(p, i);
        }
    }

    static void UnguardedLinearInsert<T>(Pairs<T> p, int last) where T : IFloatingPointIeee754<T>
    {
        var v = p.Get(last);
        int next = last - 1;
        while (p.LessThan(v.k, next))
        {
            p.Move(last, next);
            last = next;
            --next;
        }
        p.Put(last, v);
    }

    /// std::__partial_sort(first, last, last): make_heap then sort_heap.
    static void HeapSort<T>(Pairs<T> p, int first, int last) where T : IFloatingPointIeee754<T>
    {
        int len = last - first;
        if (len >= 2)
            for (int parent = (len - 2) / 2; ; parent--)
            {
                AdjustHeap(p, first, parent, len, p.Get(first + parent));
                if (parent == 0) break;
            }
        while (last - first > 1)
        {
            --last;
            var v = p.Get(last);
            p.Move(last, first);
            AdjustHeap(p, first, 0, last - first, v);
        }
    }

    static void AdjustHeap<T>(Pairs<T> p, int first, int hole, int len, (T k,
        int i) v) where T : IFloatingPointIeee754<T>
    {
        int top = hole, child = hole;
        while (child < (len - 1) / 2)
        {
            child = 2 * (child + 1);
            if (p.Less(first + child, first + child - 1)) child--;
            p.Move(first + hole, first + child);
            hole = child;
        }
        if ((len & 1) == 0 && child == (len - 2) / 2)
        {
            child = 2 * (child + 1);
            p.Move(first + hole, first + child - 1);
            hole = child - 1;
        }
        // __push_heap
        int parent = (hole - 1) / 2;
        while (hole > top && p.LessThan(first + parent, v.k))
        {
            p.Move(first + hole, first + parent);
            hole = parent;
            parent = (hole - 1) / 2;
        }
        p.Put(first + hole, v);
    }

    static int FloorLog2(int n) => 31 - BitOperations.LeadingZeroCount((uint)n);
}
