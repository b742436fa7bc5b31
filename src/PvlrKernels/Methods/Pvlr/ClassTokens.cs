// Class-name tokens for the prompt (PVLR's model/prompt.py, model/wstal.py:125-144): as the official code, CLIP's BPE
// ids of the lower-case class names (model/prompt.py's `classes` names), [SOT] name-tokens [EOT], indexing CLIP's
// 49,408-row token table (clipmodel.token_embedding.weight), so OpenAI's weights or init_thumos.pth fill
// the rows the prompt reads. Every THUMOS name is 1-3 tokens (EOT argmax positions 10/11/12 after the
// 4+4 prompt).
using PvlrKernels.Model;

namespace PvlrKernels.Methods.Pvlr;

public static class ClassTokens
{
    public static readonly Dictionary<string, string> Names = new()
    {
        ["BaseballPitch"] = "baseball pitch", ["BasketballDunk"] = "basketball dunk", ["Billiards"] = "billiards",
        ["CleanAndJerk"] = "clean and jerk", ["CliffDiving"] = "cliff diving", ["CricketBowling"] = "cricket bowling",
        ["CricketShot"] = "cricket shot", ["Diving"] = "diving", ["FrisbeeCatch"] = "frisbee catch",
            ["GolfSwing"] = "golf swing",
        ["HammerThrow"] = "hammer throw", ["HighJump"] = "high jump", ["JavelinThrow"] = "javelin throw",
            ["LongJump"] = "long jump",
        ["PoleVault"] = "pole vault", ["Shotput"] = "shot put", ["SoccerPenalty"] = "soccer penalty",
            ["TennisSwing"] = "tennis swing",
        ["ThrowDiscus"] = "throw discus", ["VolleyballSpiking"] = "volleyball spiking",
    };

    /// The text a class name is tokenized from: the original's name ("CleanAndJerk" -> "clean and jerk"),
    /// else the camel-case name split into lower-case words.
    public static string Text(string cls) => Names.TryGetValue(cls, out var n) ? n : SplitCamel(cls);

    /// Per class the token ids [SOT, BPE ids..., EOT], and the token table's size (49,408).
    public static (int[][] tokens, int vocab) Build(IReadOnlyList<string> classes)
    {
        var tok = ClipTokenizer.Default;
        var tokens = classes.Select(c =>
            tok.Encode(Text(c)).Prepend(ClipTokenizer.Sot).Append(ClipTokenizer.Eot).ToArray()).ToArray();
        return (tokens, ClipTokenizer.VocabSize);
    }

    static string SplitCamel(string s) => string.Concat(s.Select((ch,
        i) => i > 0 && char.IsUpper(ch) ? " " + char.ToLowerInvariant(ch) : char.ToLowerInvariant(ch).ToString()));
}
