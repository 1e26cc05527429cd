namespace LongCat.Tokenization;

/// <summary>
/// GPT-2's byte-to-character table used by byte-level BPE: printable Latin-1 bytes map to themselves, the
/// other 68 bytes to U+0100 and up, so every byte sequence becomes a string of visible characters
/// (a space is 'Ġ', a newline 'Ċ').
/// </summary>
public static class ByteLevel
{
    static readonly char[] s_byteToChar = BuildByteToChar();
    static readonly short[] s_charToByte = BuildCharToByte();

    static char[] BuildByteToChar()
    {
        var map = new char[256];
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)(256 + n++);
        }
        return map;
    }

    static short[] BuildCharToByte()
    {
        var map = new short[512];
        Array.Fill(map, (short)-1);
        for (int b = 0; b < 256; b++) map[s_byteToChar[b]] = (short)b;
        return map;
    }

    /// <summary>The character that stands for byte <paramref name="b"/>.</summary>
    public static char ByteToChar(byte b) => s_byteToChar[b];

    /// <summary>The byte a byte-level character stands for, or -1 when <paramref name="c"/> is not one.</summary>
    public static int CharToByte(int c) => (uint)c < 512 ? s_charToByte[c] : -1;

    /// <summary>The byte-level string of <paramref name="bytes"/>.</summary>
    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        return string.Create(bytes.Length, bytes.ToArray(), static (dst, src) =>
        {
            for (int i = 0; i < src.Length; i++) dst[i] = s_byteToChar[src[i]];
        });
    }

    /// <summary>The bytes of a byte-level token string, or null when it holds a character outside the table
    /// (Hugging Face's ByteLevel decoder then uses the token's own UTF-8 bytes).</summary>
    public static byte[]? TryDecode(string token)
    {
        var r = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            int b = CharToByte(token[i]);
            if (b < 0) return null;
            r[i] = (byte)b;
        }
        return r;
    }
}
