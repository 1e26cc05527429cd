using System.Text.Json;

namespace LongCat.Inference.Constraints;

/// <summary>
/// A grammar compiled against a vocabulary: the token masks of constrained decoding. The byte automaton's states
/// (sets of <see cref="ByteAutomaton"/> configurations) are interned into <see cref="DState"/>s with a lazily filled
/// byte transition table, so after warm-up stepping a byte is an array load; the mask of a state is computed once
/// by a walk of the vocabulary trie that stops at the first dead byte of each branch, and reused whenever a
/// sequence is in that state again (inside a string, or in the same object position of a later request).
/// Thread-safe and meant to be shared: the server keeps one per schema. <see cref="Start"/> gives a sequence's state.
/// </summary>
public sealed class JsonGrammar
{
    /// <summary>Interned states kept before the caches are dropped (bounds memory under adversarial schemas).</summary>
    public const int MaxStates = 20_000;
    /// <summary>Masks kept before the caches are dropped (each is vocab/8 bytes).</summary>
    public const int MaxMasks = 2_048;

    readonly object _lock = new();
    readonly Dictionary<DState, DState> _interned = [];
    readonly DState _start;
    int _masks, _drops;
    long _maskWalks, _trieVisits;

    public JsonGrammar(TokenVocabulary vocabulary, GrammarNode root)
    {
        Vocabulary = vocabulary;
        Root = root;
        _start = new DState([ByteAutomaton.Start(root)], concrete: true);
    }

    public TokenVocabulary Vocabulary { get; }
    public GrammarNode Root { get; }

    /// <summary>Any JSON object (OpenAI's <c>response_format: {"type": "json_object"}</c>).</summary>
    public static JsonGrammar ForJsonObject(TokenVocabulary vocabulary) => new(vocabulary, JsonSchemaCompiler.AnyObject);

    /// <summary>Values valid for a JSON schema; throws <see cref="UnsupportedSchemaException"/> naming a keyword it cannot honour.</summary>
    public static JsonGrammar ForSchema(TokenVocabulary vocabulary, JsonElement schema, bool strict = false) =>
        new(vocabulary, JsonSchemaCompiler.Compile(schema, strict));

    /// <summary>A new sequence's constraint state.</summary>
    public ITokenConstraint Start() => new Constraint(this, _start);

    /// <summary>Trie walks done (cache misses of masks) and trie nodes they visited since creation; states interned now; cache drops.</summary>
    public (long Walks, long Visits, int States, int Drops) Stats
    {
        get { lock (_lock) return (Interlocked.Read(ref _maskWalks), Interlocked.Read(ref _trieVisits), _interned.Count, _drops); }
    }

    /// <summary>
    /// A set of automaton configurations, interned: equal sets are one object, so transitions and masks are cached
    /// on it. <see cref="Dead"/> is the empty set.
    /// </summary>
    internal sealed class DState : IEquatable<DState>
    {
        public static readonly DState Dead = new([], false);

        public DState(Stack[] stacks, bool concrete)
        {
            Stacks = stacks;
            Concrete = concrete;
            int h = concrete ? 1 : 0;
            foreach (var s in stacks) h = HashCode.Combine(h, s.Hash);
            Hash = h;
        }

        public readonly Stack[] Stacks;
        /// <summary>A sequence's own state (keys keep their text); masks come from its abstract twin.</summary>
        public readonly bool Concrete;
        public readonly int Hash;
        public DState? AbstractTwin;
        public DState?[]? Next;
        public ulong[]? Mask;
        bool? _complete;

        public bool Complete => _complete ??= Stacks.Any(ByteAutomaton.CanFinish);

        public bool Equals(DState? o) => o is not null && o.Hash == Hash && o.Concrete == Concrete && o.Stacks.AsSpan().SequenceEqual(Stacks);
        public override bool Equals(object? obj) => Equals(obj as DState);
        public override int GetHashCode() => Hash;
    }

    DState Intern(DState s)
    {
        lock (_lock)
        {
            if (_interned.TryGetValue(s, out var old)) return old;
            if (_interned.Count >= MaxStates) DropCaches();
            _interned.Add(s, s);
            return s;
        }
    }

    /// <summary>Forgets every transition and mask (live sequences keep their states and rebuild what they need).</summary>
    void DropCaches()
    {
        foreach (var d in _interned.Keys) { d.Next = null; d.Mask = null; d.AbstractTwin = null; }
        _interned.Clear();
        _masks = 0;
        _drops++;
    }

    /// <summary>The state after byte <paramref name="b"/> (<see cref="DState.Dead"/> if none).</summary>
    internal DState Next(DState s, byte b)
    {
        if (s.Concrete)
        {
            // A sequence's own states hold key texts and rarely repeat: computed, not interned or cached.
            var step = new List<Stack>(s.Stacks.Length);
            foreach (var st in s.Stacks) ByteAutomaton.Step(st, b, step, true);
            return step.Count == 0 ? DState.Dead : new DState(Canonical(step), true);
        }
        var table = s.Next ?? Interlocked.CompareExchange(ref s.Next, new DState?[256], null) ?? s.Next;
        var n = table[b];
        if (n is not null) return n;
        var output = new List<Stack>(s.Stacks.Length);
        foreach (var st in s.Stacks) ByteAutomaton.Step(st, b, output, false);
        n = output.Count == 0 ? DState.Dead : Intern(new DState(Canonical(output), false));
        table[b] = n;
        return n;
    }

    static Stack[] Canonical(List<Stack> stacks) => stacks.Count == 1 ? [stacks[0]] : [.. stacks.Distinct().OrderBy(x => x.Hash)];

    /// <summary>Allowed tokens in a state, as bits (end tokens included when the text is complete).</summary>
    internal ulong[] MaskOf(DState s)
    {
        if (s.Concrete) s = s.AbstractTwin ??= Intern(new DState(Canonical([.. s.Stacks.Select(ByteAutomaton.Abstract)]), concrete: false));
        if (s.Mask is { } m) return m;
        var v = Vocabulary;
        m = new ulong[(v.Size + 63) / 64];
        long visits = 0;
        Walk(0, s, m, ref visits);
        if (s.Complete) foreach (int e in v.EndTokens) m[e >> 6] |= 1UL << e;
        Interlocked.Increment(ref _maskWalks);
        Interlocked.Add(ref _trieVisits, visits);
        lock (_lock)
        {
            if (_masks >= MaxMasks) DropCaches();
            _masks++;
        }
        s.Mask = m;
        return m;
    }

    void Walk(int node, DState s, ulong[] mask, ref long visits)
    {
        var v = Vocabulary;
        for (int c = v.FirstChild[node]; c >= 0; c = v.NextSibling[c])
        {
            visits++;
            var n = Next(s, v.Label[c]);
            if (n == DState.Dead) continue;
            for (int k = v.TokenStart[c]; k < v.TokenStart[c + 1]; k++) { int t = v.TokenIds[k]; mask[t >> 6] |= 1UL << t; }
            if (v.FirstChild[c] >= 0) Walk(c, n, mask, ref visits);
        }
    }

    /// <summary>One sequence's position in the grammar.</summary>
    sealed class Constraint(JsonGrammar g, DState start) : ITokenConstraint
    {
        DState _s = start;
        bool _ended;

        public bool IsComplete => _ended || _s.Complete;

        public void Mask(Span<float> logits)
        {
            if (_ended) throw new InvalidOperationException("the constrained text already ended");
            var m = g.MaskOf(_s);
            int n = Math.Min(logits.Length, g.Vocabulary.Size);
            for (int w = 0; w * 64 < n; w++)
            {
                ulong bits = m[w];
                if (bits == ulong.MaxValue) continue;
                int end = Math.Min(n, w * 64 + 64);
                for (int i = w * 64; i < end; i++)
                    if ((bits & 1UL << i) == 0) logits[i] = float.NegativeInfinity;
            }
            if (logits.Length > n) logits[n..].Fill(float.NegativeInfinity);
        }

        public void Advance(int token)
        {
            if (_ended) throw new InvalidOperationException($"token {token} came after the constrained text ended");
            if ((uint)token >= (uint)g.Vocabulary.Size) throw new InvalidOperationException($"token {token} is outside the vocabulary");
            if (g.Vocabulary.IsEnd(token))
            {
                if (!_s.Complete) throw new InvalidOperationException($"end token {token} came before the constrained text was complete");
                _ended = true;
                return;
            }
            var s = _s;
            foreach (byte b in g.Vocabulary.Bytes(token))
            {
                s = g.Next(s, b);
                if (s == DState.Dead) throw new InvalidOperationException($"token {token} does not fit the grammar here (it was masked)");
            }
            if (s == _s && g.Vocabulary.Bytes(token).IsEmpty) throw new InvalidOperationException($"token {token} has no text and is never allowed");
            _s = s;
        }
    }
}
