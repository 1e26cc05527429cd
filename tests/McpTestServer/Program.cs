using System.ComponentModel;
using System.Text.Json;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

// A tiny MCP server over stdio for the `longcat chat` MCP tests: the "add" tool, with the parameters schema the
// tests' tool-trained model was trained with (ToolModel.Schema in the tests), so the model sees its prompt.
var add = McpServerTool.Create([Description("Adds two integers.")] (int a, int b) => (a + b).ToString(System.Globalization.CultureInfo.InvariantCulture),
    new McpServerToolCreateOptions { Name = "add" });
add.ProtocolTool.InputSchema = JsonDocument.Parse(
    """{"type":"object","required":["a","b"],"properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"additionalProperties":false}""").RootElement.Clone();
var options = new McpServerOptions
{
    ServerInfo = new Implementation { Name = "longcat-test-tools", Version = "1.0" },
    ToolCollection = [add],
};
await using var server = McpServer.Create(new StdioServerTransport("longcat-test-tools"), options);
await server.RunAsync();
