using System.Buffers;
using System.Text;

namespace LongCat.Tokenization;

/// <summary>
/// Decodes a stream of generated ids into text pieces as they arrive (for chat and server streaming). A character
/// split across tokens is held back until it is complete; the concatenated pieces plus <see cref="Flush"/> equal
/// <see cref="Tokenizer.Decode"/> of all ids (invalid UTF-8 becomes U+FFFD the same way).
/// </summary>
public sealed class TokenStreamDecoder(Tokenizer tokenizer, bool skipSpecialTokens = false)
{
    readonly List<byte> _pending = [];

    /// <summary>Adds one id; returns the text that is now complete (possibly empty).</summary>
    public string Append(int id)
    {
        if (skipSpecialTokens && tokenizer.IsSpecial(id)) return "";
        _pending.AddRange(tokenizer.TokenBytes(id));
        var span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending);
        int keep = IncompleteTail(span);
        if (keep == span.Length) return "";
        var text = Encoding.UTF8.GetString(span[..(span.Length - keep)]);
        _pending.RemoveRange(0, span.Length - keep);
        return text;
    }

    /// <summary>Returns whatever is held back (an unfinished character becomes U+FFFD) and resets.</summary>
    public string Flush()
    {
        var text = Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending));
        _pending.Clear();
        return text;
    }

    /// <summary>Length of a trailing byte run that is a valid but unfinished UTF-8 sequence (0 to 3).</summary>
    static int IncompleteTail(ReadOnlySpan<byte> b)
    {
        for (int k = Math.Min(3, b.Length); k >= 1; k--)
        {
            byte lead = b[^k];
            if (lead < 0xC2 || lead > 0xF4) continue; // not a multi-byte lead byte
            if (Rune.DecodeFromUtf8(b[^k..], out _, out _) == OperationStatus.NeedMoreData) return k;
        }
        return 0;
    }
}
