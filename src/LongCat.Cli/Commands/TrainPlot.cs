using OxyPlot;
using OxyPlot.Axes;
using OxyPlot.Legends;
using OxyPlot.Series;

namespace LongCat.Cli.Commands;

/// <summary>The cross-entropy / experts-per-token plot of a run, as SVG (OxyPlot's managed exporter: no native code, no fonts needed).</summary>
public sealed class TrainPlot
{
    readonly List<DataPoint> _loss = [], _val = [], _experts = [];

    /// <summary>A training step: its cross-entropy (comparable with the validation loss, unlike the total with MTP and
    /// auxiliary terms) and mean real experts per token.</summary>
    public void AddStep(long step, double loss, double experts)
    {
        if (double.IsFinite(loss)) _loss.Add(new DataPoint(step, loss));
        _experts.Add(new DataPoint(step, experts));
    }

    public void AddValidation(long step, double loss)
    {
        if (double.IsFinite(loss)) _val.Add(new DataPoint(step, loss));
    }

    /// <summary>Seeds the plot with a resumed run's earlier metrics.jsonl lines.</summary>
    public void Load(string metricsPath)
    {
        if (!File.Exists(metricsPath)) return;
        foreach (var line in File.ReadLines(metricsPath))
        {
            try
            {
                using var d = System.Text.Json.JsonDocument.Parse(line);
                var r = d.RootElement;
                long step = r.GetProperty("step").GetInt64();
                if (r.TryGetProperty("val_loss", out var v)) { if (v.ValueKind == System.Text.Json.JsonValueKind.Number) AddValidation(step, v.GetDouble()); }
                else if (r.TryGetProperty("ce", out var l) && r.TryGetProperty("experts_mean", out var e))
                {
                    double sum = 0; int n = 0;
                    foreach (var x in e.EnumerateArray()) if (x.ValueKind == System.Text.Json.JsonValueKind.Number) { sum += x.GetDouble(); n++; }
                    AddStep(step, l.ValueKind == System.Text.Json.JsonValueKind.Number ? l.GetDouble() : double.NaN, n > 0 ? sum / n : 0);
                }
            }
            catch (Exception ex) when (ex is System.Text.Json.JsonException or KeyNotFoundException or InvalidOperationException) { }
        }
    }

    /// <summary>Writes the SVG atomically (temp file, rename).</summary>
    public void Save(string path, string title)
    {
        var model = new PlotModel { Title = title, DefaultFont = "DejaVu Sans", Background = OxyColors.White };
        // The SVG exporter measures text with built-in font metrics that run narrower than DejaVu Sans: generous spacing
        // and padding keep the legend's labels from overlapping or being clipped when a viewer renders them wider.
        model.Legends.Add(new Legend
        {
            LegendPlacement = LegendPlacement.Outside, LegendPosition = LegendPosition.BottomCenter, LegendOrientation = LegendOrientation.Horizontal,
            LegendItemSpacing = 48, LegendPadding = 24,
        });
        model.Axes.Add(new LinearAxis { Position = AxisPosition.Bottom, Title = "step" });
        model.Axes.Add(new LinearAxis { Position = AxisPosition.Left, Title = "cross-entropy", Key = "loss", AxisTitleDistance = 16 });
        model.Axes.Add(new LinearAxis { Position = AxisPosition.Right, Title = "real experts / token", Key = "experts", AxisTitleDistance = 16 });
        var train = new LineSeries { Title = "train CE", YAxisKey = "loss", Color = OxyColors.SteelBlue };
        train.Points.AddRange(_loss);
        var val = new LineSeries { Title = "validation CE", YAxisKey = "loss", Color = OxyColors.OrangeRed, MarkerType = MarkerType.Circle };
        val.Points.AddRange(_val);
        var experts = new LineSeries { Title = "experts/token   " /* trailing spaces: room for wider rendered fonts */, YAxisKey = "experts", Color = OxyColors.SeaGreen };
        experts.Points.AddRange(_experts);
        model.Series.Add(train);
        model.Series.Add(val);
        model.Series.Add(experts);
        var tmp = path + ".tmp";
        using (var fs = File.Create(tmp))
        {
            var exporter = new SvgExporter { Width = 900, Height = 500, UseVerticalTextAlignmentWorkaround = true };
            exporter.Export(model, fs);
        }
        File.Move(tmp, path, overwrite: true);
    }
}
