using System.Text.Json.Nodes;

namespace LongCat.Server;

/// <summary>An error answered with OpenAI's error object: <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
public sealed class ApiException(int status, string message, string type = "invalid_request_error", string? param = null, string? code = null) : Exception(message)
{
    public int Status { get; } = status;
    public string Type { get; } = type;
    public string? Param { get; } = param;
    public string? Code { get; } = code;

    /// <summary>A 400 naming the request field that is wrong.</summary>
    public static ApiException BadParam(string param, string message) => new(400, message, param: param);

    public JsonObject ToJson() => Body(Message, Type, Param, Code);

    public static JsonObject Body(string message, string type, string? param, string? code) => new()
    {
        ["error"] = new JsonObject
        {
            ["message"] = message,
            ["type"] = type,
            ["param"] = param,
            ["code"] = code,
        },
    };
}
