using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LongCat.Cli.Ablations;

/// <summary>An ablation's write-up: results.md (claim, table, measured numbers, plots) and results.json.</summary>
public sealed class Report(string name, string title, string dir)
{
    readonly StringBuilder _md = new();
    readonly JsonObject _json = new() { ["ablation"] = name, ["title"] = title, ["engine"] = Lab.EngineVersion, ["engine_description"] = Lab.EngineDescription };
    readonly JsonArray _rows = [];

    public string Dir { get; } = dir;

    public Report Claim(string text) { _md.AppendLine($"**Paper:** {text}").AppendLine(); _json["claim"] = text; return this; }

    public Report Setup(string text) { _md.AppendLine($"**Setup:** {text}").AppendLine(); _json["setup"] = text; return this; }

    public Report Table(string[] header, IEnumerable<string[]> rows)
    {
        _md.AppendLine("| " + string.Join(" | ", header) + " |");
        _md.AppendLine("|" + string.Concat(header.Select(_ => "---|")));
        foreach (var r in rows)
        {
            _md.AppendLine("| " + string.Join(" | ", r) + " |");
            var o = new JsonObject();
            for (int i = 0; i < header.Length && i < r.Length; i++) o[header[i]] = r[i];
            _rows.Add(o);
        }
        _md.AppendLine();
        return this;
    }

    public Report Measured(string text) { _md.AppendLine($"**Measured:** {text}").AppendLine(); _json["measured"] = text; return this; }

    public Report Value(string key, double v) { _json[key] = double.IsFinite(v) ? v : null; return this; }

    public Report Plot(Chart chart, string file, string caption)
    {
        var path = Path.Combine(Dir, file);
        chart.Save(path);
        _md.AppendLine($"![{caption}]({file})").AppendLine();
        (_json["plots"] as JsonArray ?? (JsonArray)(_json["plots"] = new JsonArray())).Add(file);
        return this;
    }

    public Report Runs(IEnumerable<RunResult> runs)
    {
        var a = new JsonArray();
        foreach (var r in runs)
            a.Add(new JsonObject
            {
                ["label"] = r.Label, ["dir"] = r.Dir, ["final_val_loss"] = Num(r.FinalValLoss), ["tokens"] = r.Tokens,
                ["seconds"] = Math.Round(r.Seconds, 1), ["config"] = r.Config.DeepClone(),
            });
        _json["runs"] = a;
        return this;
    }

    static JsonNode? Num(double v) => double.IsFinite(v) ? v : null;

    /// <summary>Writes results.md and results.json into the ablation's folder and returns the markdown.</summary>
    public string Save(string rerun)
    {
        Directory.CreateDirectory(Dir);
        _json["rows"] = _rows;
        _json["rerun"] = rerun;
        var md = $"## {title}\n\nRerun: `{rerun}` (measured by {Lab.EngineDescription})\n\n" + _md;
        File.WriteAllText(Path.Combine(Dir, "results.md"), md);
        File.WriteAllText(Path.Combine(Dir, "results.json"), _json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        return md;
    }

    public static string Pct(double x) => (100 * x).ToString("F1", CultureInfo.InvariantCulture) + "%";
}
