using LongCat.Kernels;
using LongCat.Model;

namespace LongCat.Inference;

/// <summary>
/// One generation's MTP draft vocabulary (<see cref="GenerationOptions.DraftVocabulary"/>): the draft scores token ids
/// [0, <see cref="Size"/>) through the lm_head's first rows, and <see cref="Row"/> widens its logits to the whole
/// vocabulary with -inf past them, so the sampler's q is 0 there. The automatic size widens to the whole vocabulary
/// when generated tokens often fall outside it (<see cref="Keep"/>). Used by <see cref="GenerationSession"/> and the
/// <see cref="BatchScheduler"/>.
/// </summary>
internal sealed unsafe class DraftVocabularyState
{
    readonly int _vocab;
    readonly bool _auto;
    int _generated, _outside;
    float[]? _row;

    /// <summary>Token ids the draft scores now: [0, Size).</summary>
    public int Size { get; private set; }

    /// <param name="o">The generation's options (validated).</param>
    /// <param name="vocab">The vocabulary size.</param>
    /// <param name="autoSize">The automatic size (tests); null: <see cref="MtpHead.DefaultDraftVocabulary"/>.</param>
    public DraftVocabularyState(GenerationOptions o, int vocab, int? autoSize = null)
    {
        _vocab = vocab;
        _auto = o.DraftVocabulary is null && o.Constraint is null;
        // Constrained decoding may allow only ids past N: always the whole vocabulary.
        Size = o.Constraint is not null ? vocab : o.DraftVocabulary ?? autoSize ?? MtpHead.DefaultDraftVocabulary(vocab);
    }

    /// <summary>
    /// The automatic draft vocabulary stays while at most 1 in 8 generated tokens fall outside it (judged from 32 tokens
    /// on): a tokenizer whose ids are not roughly in frequency order soon gets a draft over the whole vocabulary.
    /// </summary>
    internal static bool Keep(int generated, int outside) => generated < 32 || 8L * outside <= generated;

    /// <summary>Counts a generated token (call for every token the generation emits).</summary>
    public void Observe(int token)
    {
        _generated++;
        if (token >= Size) _outside++;
    }

    /// <summary>Before a draft: widens the automatic size to the whole vocabulary when <see cref="Keep"/> says so.</summary>
    public void Update()
    {
        if (_auto && Size < _vocab && !Keep(_generated, _outside))
        {
            Size = _vocab;
            _row = null;
        }
    }

    /// <summary>The lm_head the draft runs: its first <see cref="Size"/> rows (the view made once per size).</summary>
    public Weight Head(Weight lmHead)
    {
        if (_head is null || _head.Rows != Size || _head.Data != lmHead.Data) _head = lmHead.FirstRows(Size);
        return _head;
    }

    Weight? _head;

    /// <summary>
    /// Draft logits over ids [0, w) (w ≥ Size; the first Size are used) -> a vocabulary-wide row, -inf from Size on.
    /// The row is reused: read it before the next call.
    /// </summary>
    public ReadOnlySpan<float> Row(ReadOnlySpan<float> logits)
    {
        if (Size == _vocab) return logits[.._vocab];
        if (_row is null)
        {
            _row = new float[_vocab];
            _row.AsSpan(Size).Fill(float.NegativeInfinity);
        }
        logits[..Size].CopyTo(_row);
        return _row;
    }
}
