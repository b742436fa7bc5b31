// Class-name tokens for the prompt (pvlr-spec.md §1.5, §2.4). The official code tokenizes the
// lower-case class names with CLIP's BPE: [SOT] name-tokens [EOT]. Every THUMOS name is 1-3 tokens
// (EOT argmax positions 10/11/12 after the 4+4 prompt), which a word-level tokenization reproduces:
// each word is one token. Token ids index our frozen token-embedding table: 0 = pad, 1..V words,
// V+1 = SOT, V+2 = EOT (the largest id, so argmax finds the EOT as with CLIP's 49407).
namespace PvlrKernels.Model;

public static class ClassTokens
{
    public static readonly Dictionary<string, string> Names = new()
    {
        ["BaseballPitch"] = "baseball pitch", ["BasketballDunk"] = "basketball dunk", ["Billiards"] = "billiards",
        ["CleanAndJerk"] = "clean and jerk", ["CliffDiving"] = "cliff diving", ["CricketBowling"] = "cricket bowling",
        ["CricketShot"] = "cricket shot", ["Diving"] = "diving", ["FrisbeeCatch"] = "frisbee catch", ["GolfSwing"] = "golf swing",
        ["HammerThrow"] = "hammer throw", ["HighJump"] = "high jump", ["JavelinThrow"] = "javelin throw", ["LongJump"] = "long jump",
        ["PoleVault"] = "pole vault", ["Shotput"] = "shot put", ["SoccerPenalty"] = "soccer penalty", ["TennisSwing"] = "tennis swing",
        ["ThrowDiscus"] = "throw discus", ["VolleyballSpiking"] = "volleyball spiking",
    };

    /// Returns per class the token ids [SOT, words..., EOT] and the vocabulary size (ids 0..V+2).
    public static (int[][] tokens, int vocab) Build(IReadOnlyList<string> classes)
    {
        var words = new List<string>();
        var perClass = classes.Select(c => (Names.TryGetValue(c, out var n) ? n : SplitCamel(c)).Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToArray();
        foreach (var w in perClass.SelectMany(x => x)) if (!words.Contains(w)) words.Add(w);
        int sot = words.Count + 1, eot = words.Count + 2;
        var tokens = perClass.Select(ws => new[] { sot }.Concat(ws.Select(w => words.IndexOf(w) + 1)).Append(eot).ToArray()).ToArray();
        return (tokens, eot + 1);
    }

    static string SplitCamel(string s) => string.Concat(s.Select((ch, i) => i > 0 && char.IsUpper(ch) ? " " + char.ToLowerInvariant(ch) : char.ToLowerInvariant(ch).ToString()));
}
