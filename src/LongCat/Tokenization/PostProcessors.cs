namespace LongCat.Tokenization;

/// <summary>One post-processor step of tokenizer.json (applied to a single sequence).</summary>
abstract class PostStep
{
    public abstract void Process(EncodeState st, Tokenizer tok, bool addSpecialTokens);
}

/// <summary>
/// <c>ByteLevel</c> post-processor: with <c>trim_offsets</c>, offsets drop leading and trailing spaces
/// ('Ġ' or white space) of each token, counted in token characters and applied to char offsets, exactly as
/// HF's <c>process_offsets</c> does (it runs after the conversion to char offsets).
/// </summary>
sealed class ByteLevelPost(bool trimOffsets, bool addPrefixSpace) : PostStep
{
    public override void Process(EncodeState st, Tokenizer tok, bool addSpecialTokens)
    {
        if (!trimOffsets || !st.Details) return;
        for (int i = 0; i < st.Ids.Count; i++)
        {
            string t = st.TokenText[i] ?? tok.IdToToken(st.Ids[i]) ?? "";
            static bool Space(char c) => c == 'Ġ' || UnicodeTables.IsWhiteSpace(c);
            int lead = 0;
            while (lead < t.Length && Space(t[lead])) lead++;
            int trail = 0;
            while (trail < t.Length && Space(t[t.Length - 1 - trail])) trail++;
            if (lead == 0 && trail == 0) continue;
            var (s, e) = st.Offsets[i];
            if (lead > 0)
            {
                bool isFirst = i == 0 || s == 0;
                if (isFirst && addPrefixSpace && lead == 1) lead = 0;
                s = Math.Min(s + lead, e);
            }
            if (trail > 0 && e >= trail) e = Math.Max(e - trail, s);
            st.Offsets[i] = (s, e);
        }
    }
}

/// <summary><c>TemplateProcessing</c> (single sequence): with add_special_tokens, inserts the template's special
/// tokens (offsets (0, 0)) around the sequence.</summary>
sealed class TemplatePost(IReadOnlyList<(bool IsSequence, int[] Ids, string[] Tokens)> single) : PostStep
{
    public override void Process(EncodeState st, Tokenizer tok, bool addSpecialTokens)
    {
        if (!addSpecialTokens) return;
        var ids = st.Ids.ToArray();
        var offs = st.Offsets.ToArray();
        var texts = st.TokenText.ToArray();
        st.Ids.Clear();
        st.Offsets.Clear();
        st.TokenText.Clear();
        foreach (var (isSeq, sids, stoks) in single)
        {
            if (isSeq)
            {
                for (int i = 0; i < ids.Length; i++)
                {
                    st.Ids.Add(ids[i]);
                    if (st.Details)
                    {
                        st.Offsets.Add(offs[i]);
                        st.TokenText.Add(texts[i]);
                    }
                }
                continue;
            }
            for (int i = 0; i < sids.Length; i++) st.Emit(sids[i], 0, 0, stoks[i]);
        }
    }
}
