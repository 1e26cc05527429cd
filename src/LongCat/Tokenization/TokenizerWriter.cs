using System.Text.Encodings.Web;
using System.Text.Json;

namespace LongCat.Tokenization;

/// <summary>
/// Writes a trained byte-level BPE as Hugging Face <c>tokenizer.json</c> + <c>tokenizer_config.json</c>, the layout
/// of the LongCat release (Split x3 + ByteLevel pre-tokenizer, ByteLevel decoder, special tokens as added tokens),
/// loadable by <see cref="Tokenizer.Load"/>, <c>tokenizers</c> and <c>transformers</c>. Files are written to a
/// temporary name and renamed, so a crash never leaves half a file.
/// </summary>
public static class TokenizerWriter
{
    static readonly JsonWriterOptions s_options = new() { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Writes both files into <paramref name="dir"/> (created if missing).</summary>
    public static void Save(TrainedBpe model, string dir)
    {
        Directory.CreateDirectory(dir);
        WriteAtomic(Path.Combine(dir, "tokenizer.json"), w => WriteTokenizerJson(w, model));
        WriteAtomic(Path.Combine(dir, "tokenizer_config.json"), w => WriteConfig(w, model));
    }

    static void WriteAtomic(string path, Action<Utf8JsonWriter> write)
    {
        string tmp = path + ".tmp";
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        {
            using (var w = new Utf8JsonWriter(fs, s_options)) write(w);
            fs.Write("\n"u8);
            fs.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
    }

    static void WriteTokenizerJson(Utf8JsonWriter w, TrainedBpe m)
    {
        w.WriteStartObject();
        w.WriteString("version", "1.0");
        w.WriteNull("truncation");
        w.WriteNull("padding");
        w.WriteStartArray("added_tokens");
        for (int i = 0; i < m.SpecialTokens.Count; i++)
        {
            w.WriteStartObject();
            w.WriteNumber("id", i);
            w.WriteString("content", m.SpecialTokens[i]);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNull("normalizer");
        w.WriteStartObject("pre_tokenizer");
        w.WriteString("type", "Sequence");
        w.WriteStartArray("pretokenizers");
        foreach (var p in m.SplitPatterns)
        {
            w.WriteStartObject();
            w.WriteString("type", "Split");
            w.WriteStartObject("pattern");
            w.WriteString("Regex", p);
            w.WriteEndObject();
            w.WriteString("behavior", "Isolated");
            w.WriteBoolean("invert", false);
            w.WriteEndObject();
        }
        w.WriteStartObject();
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", false);
        w.WriteBoolean("trim_offsets", false);
        w.WriteBoolean("use_regex", false);
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteNull("post_processor");
        w.WriteStartObject("decoder");
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", false);
        w.WriteBoolean("trim_offsets", false);
        w.WriteBoolean("use_regex", false);
        w.WriteEndObject();
        w.WriteStartObject("model");
        w.WriteString("type", "BPE");
        w.WriteNull("dropout");
        if (m.SpecialTokens.Contains(LongCatTokenizerSpec.Unk)) w.WriteString("unk_token", LongCatTokenizerSpec.Unk);
        else w.WriteNull("unk_token");
        w.WriteNull("continuing_subword_prefix");
        w.WriteNull("end_of_word_suffix");
        w.WriteBoolean("fuse_unk", false);
        w.WriteBoolean("byte_fallback", false);
        w.WriteBoolean("ignore_merges", false);
        w.WriteStartObject("vocab");
        for (int i = 0; i < m.Vocab.Count; i++) w.WriteNumber(m.Vocab[i], i);
        w.WriteEndObject();
        w.WriteStartArray("merges");
        foreach (var (a, b) in m.Merges)
        {
            w.WriteStartArray();
            w.WriteStringValue(a);
            w.WriteStringValue(b);
            w.WriteEndArray();
        }
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
    }

    static void WriteConfig(Utf8JsonWriter w, TrainedBpe m)
    {
        w.WriteStartObject();
        w.WriteStartObject("added_tokens_decoder");
        for (int i = 0; i < m.SpecialTokens.Count; i++)
        {
            w.WriteStartObject(i.ToString(System.Globalization.CultureInfo.InvariantCulture));
            w.WriteString("content", m.SpecialTokens[i]);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }
        w.WriteEndObject();
        void Tok(string key, string value)
        {
            if (m.SpecialTokens.Contains(value)) w.WriteString(key, value);
        }
        Tok("unk_token", LongCatTokenizerSpec.Unk);
        Tok("bos_token", LongCatTokenizerSpec.Bos);
        Tok("eos_token", LongCatTokenizerSpec.Eos);
        Tok("pad_token", LongCatTokenizerSpec.Pad);
        w.WriteBoolean("clean_up_tokenization_spaces", false);
        w.WriteNumber("model_max_length", 131072);
        w.WriteString("tokenizer_class", "PreTrainedTokenizerFast");
        w.WriteString("chat_template", ChatFormat.JinjaTemplate);
        w.WriteEndObject();
    }
}
