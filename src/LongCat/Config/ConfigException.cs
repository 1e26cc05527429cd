namespace LongCat.Config;

/// <summary>An invalid or unsupported configuration value. The message names the key and the rule it breaks.</summary>
public sealed class ConfigException(string message) : Exception(message)
{
    /// <summary>Throws naming <paramref name="key"/>, the offending value and the rule.</summary>
    public static ConfigException Invalid(string source, string key, object? value, string rule) =>
        new($"{source}: invalid value for '{key}' ({Format(value)}): {rule}");

    internal static string Format(object? v) => v switch
    {
        null => "null",
        string s => $"\"{s}\"",
        double d => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        bool b => b ? "true" : "false",
        _ => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) ?? "?",
    };
}
