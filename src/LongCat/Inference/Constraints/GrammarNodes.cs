using System.Text;

namespace LongCat.Inference.Constraints;

/// <summary>
/// A compiled grammar element: what one JSON value (or one piece of a tool call) may look like, byte by byte.
/// Built by <see cref="JsonSchemaCompiler"/> and <see cref="ToolCallGrammar"/>, run by <see cref="ByteAutomaton"/>.
/// Every node can be satisfied (the compiler refuses schemas that cannot), so no reachable state is a dead end.
/// </summary>
public abstract class GrammarNode;

/// <summary>One of several alternatives (anyOf, a list of types, any JSON value).</summary>
sealed class AnyOfNode(GrammarNode[] options) : GrammarNode
{
    public GrammarNode[] Options { get; set; } = options;
}

/// <summary>
/// A JSON object: declared properties in any order, each at most once, the required ones before <c>}</c>;
/// other keys only when <see cref="Additional"/> is set (their values then follow it). At most 64 declared properties.
/// </summary>
sealed class ObjectNode : GrammarNode
{
    public ObjectNode(string[] names, GrammarNode[] schemas, ulong required, GrammarNode? additional)
    {
        Names = names;
        Schemas = schemas;
        Required = required;
        Additional = additional;
        for (int i = 0; i < names.Length; i++)
        {
            var b = Encoding.UTF8.GetBytes(names[i]);
            string key = Encoding.Latin1.GetString(b);
            Exact[key] = i;
            for (int n = 0; n <= b.Length; n++)
            {
                string p = key[..n];
                PrefixOf[p] = PrefixOf.GetValueOrDefault(p) | 1UL << i;
            }
        }
    }

    public string[] Names { get; }
    public GrammarNode[] Schemas { get; }
    /// <summary>Bit i set: property i is required.</summary>
    public ulong Required { get; }
    /// <summary>Schema of keys that are not declared; null = no other keys.</summary>
    public GrammarNode? Additional { get; }
    /// <summary>Key bytes (as Latin-1 chars) → declared property index.</summary>
    public Dictionary<string, int> Exact { get; } = [];
    /// <summary>Key prefix bytes (as Latin-1 chars) → mask of declared properties that start with it.</summary>
    public Dictionary<string, ulong> PrefixOf { get; } = [];
    public ulong All => Names.Length == 64 ? ulong.MaxValue : (1UL << Names.Length) - 1;
}

/// <summary>A JSON array of <see cref="Min"/>..<see cref="Max"/> items.</summary>
sealed class ArrayNode(GrammarNode items, int min, int max) : GrammarNode
{
    public GrammarNode Items { get; set; } = items;
    public int Min { get; } = min;
    public int Max { get; } = max;
}

/// <summary>Any JSON string (valid UTF-8, escapes allowed except \u of a surrogate).</summary>
sealed class StringNode : GrammarNode
{
    public static readonly StringNode Instance = new();
}

/// <summary>A JSON number, or an integer (no fraction or exponent); digit counts are bounded.</summary>
sealed class NumberNode(bool integer) : GrammarNode
{
    public static readonly NumberNode Number = new(false), Integer = new(true);
    public bool IntegerOnly { get; } = integer;
}

/// <summary>
/// One of a fixed set of byte strings (enum, const, true/false/null, the fixed text of a tool call), sorted
/// bytewise so the candidates that share a prefix form a contiguous range.
/// </summary>
sealed class LiteralNode : GrammarNode
{
    public LiteralNode(IEnumerable<byte[]> literals)
    {
        var list = literals.DistinctBy(Convert.ToBase64String).ToList();
        list.Sort((a, b) => a.AsSpan().SequenceCompareTo(b));
        if (list.Count == 0 || list.Any(l => l.Length == 0)) throw new ArgumentException("a literal set needs at least one non-empty literal");
        Literals = [.. list];
    }

    public static LiteralNode Of(params string[] texts) => new(texts.Select(Encoding.UTF8.GetBytes));

    public byte[][] Literals { get; }
}

/// <summary>Its parts one after another, with nothing between them.</summary>
sealed class SeqNode(GrammarNode[] parts) : GrammarNode
{
    public GrammarNode[] Parts { get; } = parts;
}

/// <summary><see cref="Min"/>..<see cref="Max"/> items, separated by a fixed text (back-to-back tool calls).</summary>
sealed class RepeatNode : GrammarNode
{
    public RepeatNode(GrammarNode item, string separator, int min, int max)
    {
        Item = item;
        Min = min;
        Max = max;
        SeparatorThenItem = separator.Length == 0 ? item : new SeqNode([LiteralNode.Of(separator), item]);
    }

    public GrammarNode Item { get; }
    public GrammarNode SeparatorThenItem { get; }
    public int Min { get; }
    public int Max { get; }
}
