using System.Text.Json.Nodes;
using LongCat.Inference;
using LongCat.Tokenization;

namespace LongCat.Server;

/// <summary>
/// Log-probabilities in OpenAI's two response shapes: chat's <c>logprobs.content</c> entries
/// (<c>token</c>, <c>logprob</c>, <c>bytes</c>, <c>top_logprobs</c>) and the legacy completions block
/// (<c>tokens</c>, <c>token_logprobs</c>, <c>top_logprobs</c>, <c>text_offset</c>). The numbers are the model's own
/// distribution (<see cref="TokenLogprobs"/>).
/// </summary>
static class Logprobs
{
    static string Text(Tokenizer t, int id) => t.Decode([id]);

    static JsonArray Bytes(Tokenizer t, int id)
    {
        var a = new JsonArray();
        foreach (var b in t.TokenBytes(id)) a.Add(b);
        return a;
    }

    /// <summary>One chat <c>logprobs.content</c> entry.</summary>
    public static JsonObject ChatEntry(Tokenizer t, TokenLogprob lp)
    {
        var top = new JsonArray();
        foreach (var (id, l) in lp.Top)
            top.Add(new JsonObject { ["token"] = Text(t, id), ["logprob"] = l, ["bytes"] = Bytes(t, id) });
        return new JsonObject { ["token"] = Text(t, lp.Id), ["logprob"] = lp.Logprob, ["bytes"] = Bytes(t, lp.Id), ["top_logprobs"] = top };
    }

    /// <summary>Chat's <c>logprobs</c> object for these tokens.</summary>
    public static JsonObject Chat(Tokenizer t, IEnumerable<TokenLogprob> lps)
    {
        var content = new JsonArray();
        foreach (var lp in lps) content.Add(ChatEntry(t, lp));
        return new JsonObject { ["content"] = content, ["refusal"] = null };
    }

    /// <summary>The legacy completions block; <paramref name="offset"/> is the text offset of the first token.</summary>
    public static JsonObject Legacy(Tokenizer t, IEnumerable<TokenLogprob> lps, int offset)
    {
        var tokens = new JsonArray();
        var logprobs = new JsonArray();
        var tops = new JsonArray();
        var offsets = new JsonArray();
        foreach (var lp in lps)
        {
            var s = Text(t, lp.Id);
            tokens.Add(s);
            logprobs.Add(lp.Logprob);
            var top = new JsonObject();
            foreach (var (id, l) in lp.Top) top[Text(t, id)] ??= l;   // two ids may decode alike: keep the likelier
            tops.Add(top);
            offsets.Add(offset);
            offset += s.Length;
        }
        return new JsonObject { ["tokens"] = tokens, ["token_logprobs"] = logprobs, ["top_logprobs"] = tops, ["text_offset"] = offsets };
    }
}
