using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace LongCat.Server;

/// <summary>
/// Checks every request body gets before its fields are read: the media type must be <c>application/json</c>
/// (415 otherwise: a web page can send a text/plain or form body cross-origin without a preflight, never a JSON one),
/// and every string in the document (values and property names, at any depth) must be valid UTF-8 without lone
/// surrogates (400 naming the field, e.g. <c>messages[2].content</c>).
/// </summary>
public static class RequestValidation
{
    /// <summary>Throws 415 unless the body is declared as JSON in UTF-8.</summary>
    public static void RequireJson(HttpRequest request)
    {
        var type = request.ContentType;
        if (type is null || !Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(type, out var media)
            || !media.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase))
            throw new ApiException(415, $"the request body must be sent as 'Content-Type: application/json', got '{type ?? "(none)"}'", code: "unsupported_media_type");
        if (media.Charset.HasValue && !media.Charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase))
            throw new ApiException(415, $"the request body must be application/json in UTF-8, got charset '{media.Charset}'", code: "unsupported_media_type");
    }

    /// <summary>Throws a 400 naming the first string (value or property name) that is not valid Unicode text.</summary>
    public static void CheckStrings(JsonElement root) => Walk(root, "");

    static void Walk(JsonElement e, string path)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.String:
                if (!Valid(e)) throw Bad(path);
                break;
            case JsonValueKind.Array:
                int i = 0;
                foreach (var item in e.EnumerateArray()) Walk(item, $"{path}[{i++}]");
                break;
            case JsonValueKind.Object:
                foreach (var p in e.EnumerateObject())
                {
                    string name;
                    try { name = p.Name; }
                    catch (InvalidOperationException) { throw Bad(path.Length == 0 ? "(a property name)" : path + ".(a property name)"); }
                    if (HasLoneSurrogate(name)) throw Bad(path.Length == 0 ? "(a property name)" : path + ".(a property name)");
                    Walk(p.Value, path.Length == 0 ? name : $"{path}.{name}");
                }
                break;
        }
    }

    static ApiException Bad(string path) => ApiException.BadParam(path,
        $"'{path}' is not valid Unicode text: it holds invalid UTF-8 or a lone surrogate escape (like \\ud800 without its pair)");

    static bool Valid(JsonElement e)
    {
        string s;
        try { s = e.GetString()!; }
        catch (InvalidOperationException) { return false; }
        return !HasLoneSurrogate(s);
    }

    /// <summary>True when a high surrogate is not followed by a low one, or a low one stands alone.</summary>
    public static bool HasLoneSurrogate(string s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (char.IsHighSurrogate(c))
            {
                if (i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) { i++; continue; }
                return true;
            }
            if (char.IsLowSurrogate(c)) return true;
        }
        return false;
    }
}
