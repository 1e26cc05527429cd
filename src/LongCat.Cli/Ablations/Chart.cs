using OxyPlot;
using OxyPlot.Annotations;
using OxyPlot.Axes;
using OxyPlot.Legends;
using OxyPlot.Series;

namespace LongCat.Cli.Ablations;

/// <summary>A line/scatter chart written as SVG with OxyPlot's managed exporter (the ablations' plots).</summary>
public sealed class Chart(string title, string xTitle, string yTitle, bool logX = false)
{
    readonly PlotModel _model = Build(title, xTitle, yTitle, logX);
    static readonly OxyColor[] Palette =
    [
        OxyColors.SteelBlue, OxyColors.OrangeRed, OxyColors.SeaGreen, OxyColors.MediumPurple, OxyColors.Goldenrod,
        OxyColors.DimGray, OxyColors.Crimson, OxyColors.Teal,
    ];
    int _next;

    static PlotModel Build(string title, string xTitle, string yTitle, bool logX)
    {
        var m = new PlotModel { Title = title, DefaultFont = "DejaVu Sans", Background = OxyColors.White, TitleFontSize = 15 };
        // Inside, top right, one entry per line: the SVG exporter's text metrics run narrower than the fonts viewers
        // use, so a horizontal legend's entries overlap when rendered.
        m.Legends.Add(new Legend
        {
            LegendPlacement = LegendPlacement.Inside, LegendPosition = LegendPosition.RightTop, LegendOrientation = LegendOrientation.Vertical,
            LegendBackground = OxyColor.FromAColor(220, OxyColors.White), LegendBorder = OxyColors.Gray, LegendPadding = 10,
        });
        m.Axes.Add(logX
            ? new LogarithmicAxis { Position = AxisPosition.Bottom, Title = xTitle, MajorGridlineStyle = LineStyle.Dot }
            : new LinearAxis { Position = AxisPosition.Bottom, Title = xTitle, MajorGridlineStyle = LineStyle.Dot });
        m.Axes.Add(new LinearAxis { Position = AxisPosition.Left, Title = yTitle, AxisTitleDistance = 14, MajorGridlineStyle = LineStyle.Dot });
        return m;
    }

    /// <summary>Adds a series; <paramref name="markers"/> draws points, <paramref name="line"/> joins them.</summary>
    public Chart Series(string name, IEnumerable<(double X, double Y)> points, bool markers = false, bool line = true, bool dashed = false, int? color = null)
    {
        var c = Palette[(color ?? _next++) % Palette.Length];
        var s = new LineSeries
        {
            // Trailing spaces widen the measured legend box: viewers render the text wider than the exporter measures it.
            Title = name + new string(' ', name.Length / 2 + 4), Color = line ? c : OxyColors.Transparent, MarkerFill = c, MarkerStroke = c,
            MarkerType = markers ? MarkerType.Circle : MarkerType.None, MarkerSize = 4, LineStyle = dashed ? LineStyle.Dash : LineStyle.Solid,
        };
        foreach (var (x, y) in points) if (double.IsFinite(x) && double.IsFinite(y)) s.Points.Add(new DataPoint(x, y));
        _model.Series.Add(s);
        return this;
    }

    /// <summary>A horizontal reference line (e.g. the budget target).</summary>
    public Chart HLine(double y, string text)
    {
        _model.Annotations.Add(new LineAnnotation { Type = LineAnnotationType.Horizontal, Y = y, Text = text, Color = OxyColors.Black, LineStyle = LineStyle.Dash });
        return this;
    }

    /// <summary>A vertical reference line (e.g. the measured gradient RMS).</summary>
    public Chart VLine(double x, string text)
    {
        _model.Annotations.Add(new LineAnnotation { Type = LineAnnotationType.Vertical, X = x, Text = text, Color = OxyColors.Black, LineStyle = LineStyle.Dash });
        return this;
    }

    /// <summary>Writes the SVG atomically.</summary>
    public void Save(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var tmp = path + ".tmp";
        using (var fs = File.Create(tmp))
            new SvgExporter { Width = 900, Height = 520, UseVerticalTextAlignmentWorkaround = true }.Export(_model, fs);
        File.Move(tmp, path, overwrite: true);
    }
}
