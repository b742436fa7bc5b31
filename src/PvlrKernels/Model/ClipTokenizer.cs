// CLIP's byte-level BPE tokenizer (openai/CLIP clip/simple_tokenizer.py, MIT; the vocabulary
// features/clip/bpe_simple_vocab_16e6.txt.gz ships with its licence), as clip.tokenize uses it:
//   clean: HTML entities unescaped twice, whitespace runs to one space, trimmed, lower case
//          (CLIP also runs ftfy.fix_text, which repairs mis-decoded text; names typed as Unicode need none)
//   split: <|startoftext|> | <|endoftext|> | 's 't 're 've 'm 'll 'd | letters+ | one digit | other non-space+
//   each piece: UTF-8 bytes mapped to printable characters (bytes_to_unicode), the last one marked with
//          </w>, then the lowest-ranked merge applied everywhere, repeatedly, until none applies
//   ids: the 256 byte characters, the same with </w>, the 48,894 merges, SOT 49406, EOT 49407 (49,408 in all)
//   Tokenize: [SOT] + ids + [EOT], zero-padded to the context (77).
using System.IO.Compression;
using System.Text;
using System.Text.RegularExpressions;

namespace PvlrKernels.Model;

public sealed class ClipTokenizer
{
    public const int Sot = 49406, Eot = 49407, VocabSize = 49408, Context = 77;
    const int MergeCount = 49152 - 256 - 2;          // simple_tokenizer.py: merges[1:49152-256-2+1]

    static readonly Lazy<ClipTokenizer> Shared = new(() => new ClipTokenizer());
    /// The tokenizer over the vocabulary embedded in the library.
    public static ClipTokenizer Default => Shared.Value;

    static readonly Regex Pieces = new(
        @"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        RegexOptions.IgnoreCase | RegexOptions.Compiled);
    static readonly Regex Spaces = new(@"\s+", RegexOptions.Compiled);

    readonly string[] byteChar = new string[256];
    readonly Dictionary<string, int> encoder = new();
    readonly Dictionary<(string, string), int> ranks = new();
    readonly Dictionary<string, string[]> cache = new();

    ClipTokenizer()
    {
        using var gz = typeof(ClipTokenizer).Assembly.GetManifestResourceStream("clip/bpe_simple_vocab_16e6.txt.gz")
            ?? throw new InvalidOperationException("the CLIP vocabulary is not embedded in the library");
        using var reader = new StreamReader(new GZipStream(gz, CompressionMode.Decompress), Encoding.UTF8);
        var lines = reader.ReadToEnd().Split('\n');
        if (lines.Length < MergeCount + 1)
            throw new InvalidOperationException($"the CLIP vocabulary holds {lines.Length - 1} merges, expected "
                + $"{MergeCount}");
        // bytes_to_unicode: printable Latin-1 bytes map to themselves, the others to 256, 257, ... in byte order
        var chars = new List<int>();
        for (int b = '!'; b <= '~'; b++) chars.Add(b);
        for (int b = 0xA1; b <= 0xAC; b++) chars.Add(b);
        for (int b = 0xAE; b <= 0xFF; b++) chars.Add(b);
        var bytes = new List<int>(chars);
        for (int b = 0, n = 0; b < 256; b++) if (!bytes.Contains(b))
        {
            bytes.Add(b);
            chars.Add(256 + n++);
        }
        for (int i = 0; i < 256; i++) byteChar[bytes[i]] = char.ConvertFromUtf32(chars[i]);
        var vocab = new List<string>();
        foreach (var c in chars) vocab.Add(char.ConvertFromUtf32(c));
        foreach (var c in chars) vocab.Add(char.ConvertFromUtf32(c) + "</w>");
        for (int i = 0; i < MergeCount; i++)
        {
            var pair = lines[1 + i].Split(' ');
            if (pair.Length != 2)
                throw new InvalidOperationException($"the CLIP vocabulary's merge {i + 1} is '{lines[1 + i]}'");
            ranks[(pair[0], pair[1])] = i;
            vocab.Add(pair[0] + pair[1]);
        }
        vocab.Add("<|startoftext|>");
        vocab.Add("<|endoftext|>");
        for (int i = 0; i < vocab.Count; i++) encoder[vocab[i]] = i;
        cache["<|startoftext|>"] = new[] { "<|startoftext|>" };
        cache["<|endoftext|>"] = new[] { "<|endoftext|>" };
    }

    /// The BPE ids of a text, without SOT/EOT.
    public int[] Encode(string text)
    {
        text = System.Net.WebUtility.HtmlDecode(System.Net.WebUtility.HtmlDecode(text)).Trim();
        text = Spaces.Replace(text, " ").Trim().ToLowerInvariant();
        var ids = new List<int>();
        foreach (Match m in Pieces.Matches(text))
        {
            var sb = new StringBuilder();
            foreach (var b in Encoding.UTF8.GetBytes(m.Value)) sb.Append(byteChar[b]);
            foreach (var piece in Bpe(sb.ToString())) ids.Add(encoder[piece]);
        }
        return ids.ToArray();
    }

    /// clip.tokenize: [SOT] + Encode(text) + [EOT], zero-padded to `context`; a longer text is an error.
    public int[] Tokenize(string text, int context = Context)
    {
        var ids = Encode(text);
        if (ids.Length + 2 > context)
            throw new ArgumentException($"'{text}' is {ids.Length + 2} tokens, longer than the context {context}");
        var row = new int[context];
        row[0] = Sot;
        ids.CopyTo(row, 1);
        row[ids.Length + 1] = Eot;
        return row;
    }

    string[] Bpe(string token)
    {
        lock (cache) if (cache.TryGetValue(token, out var hit)) return hit;
        var word = new List<string>();
        var units = new List<string>();
        for (int i = 0; i < token.Length; i += char.IsSurrogatePair(token,
            i) ? 2 : 1) units.Add(char.ConvertFromUtf32(char.ConvertToUtf32(token, i)));
        for (int i = 0; i < units.Count; i++) word.Add(i == units.Count - 1 ? units[i] + "</w>" : units[i]);
        while (word.Count > 1)
        {
            // the pair of lowest rank; ties cannot happen (each pair has one rank)
            (string a, string b) best = default;
            int bestRank = int.MaxValue;
            for (int i = 0; i + 1 < word.Count; i++)
                if (ranks.TryGetValue((word[i], word[i + 1]),
                    out int r) && r < bestRank) { bestRank = r; best = (word[i], word[i + 1]); }
            if (bestRank == int.MaxValue) break;
            var merged = new List<string>(word.Count);
            for (int i = 0; i < word.Count;)
            {
                if (i + 1 < word.Count && word[i] == best.a && word[i + 1] == best.b)
                {
                    merged.Add(best.a + best.b);
                    i += 2;
                }
                else merged.Add(word[i++]);
            }
            word = merged;
        }
        var result = word.ToArray();
        lock (cache) cache[token] = result;
        return result;
    }
}
