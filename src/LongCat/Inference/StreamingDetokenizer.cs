using System.Text;
using LongCat.Tokenization;

namespace LongCat.Inference;

/// <summary>
/// Turns generated ids into text as they arrive, for streaming: bytes of a character split over several byte-level
/// tokens are held until the character is complete, special tokens (end of turn, eos) are left out, and text that
/// could be the start of a stop string is held until it is known not to be one. A stop string and everything
/// after it never reach the output (OpenAI's <c>stop</c> semantics).
/// </summary>
public sealed class StreamingDetokenizer
{
    readonly Tokenizer _tokenizer;
    readonly IReadOnlyList<string> _stops;
    readonly int _maxStop;
    readonly List<byte> _pendingBytes = [];
    readonly StringBuilder _text = new();
    int _emitted;
    bool _first = true;

    public StreamingDetokenizer(Tokenizer tokenizer, IReadOnlyList<string>? stopStrings = null)
    {
        _tokenizer = tokenizer;
        _stops = stopStrings ?? [];
        _maxStop = _stops.Count == 0 ? 0 : _stops.Max(s => s.Length);
    }

    bool IsMarker(int id) => _tokenizer.IdToToken(id) is { } t && ToolCallFormat.Markers.Contains(t);

    /// <summary>True once a stop string was seen: later tokens add nothing.</summary>
    public bool Stopped { get; private set; }

    /// <summary>The stop string that ended the text, if any.</summary>
    public string? MatchedStop { get; private set; }

    /// <summary>All text released so far.</summary>
    public string Text => _text.ToString(0, _emitted);

    /// <summary>Adds one token; returns the text that became safe to show (possibly empty).</summary>
    public string Push(int id)
    {
        // Special tokens are left out, except the tool-call and thinking markers (some tokenizers make them special
        // tokens): the reply parser needs their text.
        if (Stopped || (_tokenizer.IsSpecial(id) && !IsMarker(id))) return "";
        if (!_tokenizer.ByteLevelDecoder)
        {
            // Tokenizers without a byte-level decoder join token strings with spaces (HF's default).
            if (!_first) _pendingBytes.Add((byte)' ');
        }
        _first = false;
        foreach (var b in _tokenizer.TokenBytes(id)) _pendingBytes.Add(b);
        int complete = CompletePrefix(_pendingBytes);
        if (complete > 0)
        {
            var bytes = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pendingBytes)[..complete];
            _text.Append(Encoding.UTF8.GetString(bytes));
            _pendingBytes.RemoveRange(0, complete);
        }
        return Release(final: false);
    }

    /// <summary>The end of generation: releases whatever is held (an incomplete character becomes U+FFFD).</summary>
    public string Flush()
    {
        if (!Stopped && _pendingBytes.Count > 0)
        {
            _text.Append(Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pendingBytes)));
            _pendingBytes.Clear();
        }
        return Release(final: true);
    }

    string Release(bool final)
    {
        if (Stopped) return "";
        int end = _text.Length;
        if (_stops.Count > 0)
        {
            // A new match can only start within the last (maxStop - 1) characters before the new text.
            int from = Math.Max(0, _emitted - _maxStop + 1);
            var tail = _text.ToString(from, _text.Length - from);
            int best = -1;
            foreach (var s in _stops)
            {
                int k = tail.IndexOf(s, StringComparison.Ordinal);
                if (k >= 0 && (best < 0 || k < best)) { best = k; MatchedStop = s; }
            }
            if (best >= 0)
            {
                Stopped = true;
                end = Math.Max(_emitted, from + best);
                var stopText = _text.ToString(_emitted, end - _emitted);
                _emitted = end;
                return stopText;
            }
            if (!final)
            {
                // Hold back the longest suffix that is a proper prefix of a stop string.
                int hold = 0;
                foreach (var s in _stops)
                    for (int l = Math.Min(s.Length - 1, _text.Length - _emitted); l > hold; l--)
                        if (EndsWith(_text, s.AsSpan(0, l))) { hold = l; break; }
                end -= hold;
            }
        }
        // Never split a surrogate pair.
        if (!final && end > _emitted && char.IsHighSurrogate(_text[end - 1])) end--;
        if (end <= _emitted) return "";
        var s2 = _text.ToString(_emitted, end - _emitted);
        _emitted = end;
        return s2;
    }

    static bool EndsWith(StringBuilder sb, ReadOnlySpan<char> suffix)
    {
        if (suffix.Length > sb.Length) return false;
        int o = sb.Length - suffix.Length;
        for (int i = 0; i < suffix.Length; i++) if (sb[o + i] != suffix[i]) return false;
        return true;
    }

    /// <summary>Length of the longest prefix of <paramref name="b"/> that does not end inside a UTF-8 character.</summary>
    static int CompletePrefix(List<byte> b)
    {
        int n = b.Count;
        // Look back at most 3 bytes for the lead byte of a character that is still missing bytes.
        for (int back = 1; back <= Math.Min(3, n); back++)
        {
            byte x = b[n - back];
            if ((x & 0xC0) == 0x80) continue;       // continuation byte: keep looking for the lead
            int need = (x & 0xE0) == 0xC0 ? 2 : (x & 0xF0) == 0xE0 ? 3 : (x & 0xF8) == 0xF0 ? 4 : 1;
            return need > back ? n - back : n;
        }
        return n;  // only continuation bytes at the end: invalid anyway, let the decoder replace them
    }
}
