using System.ComponentModel;
using Microsoft.Extensions.AI;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

// A tiny MCP server over stdio for the `longcat chat --mcp` tests: two deterministic tools.
var options = new McpServerOptions
{
    ServerInfo = new Implementation { Name = "longcat-test-tools", Version = "1.0" },
    ToolCollection =
    [
        McpServerTool.Create([Description("Adds two integers.")] (int a, int b) => a + b, new() { Name = "add" }),
        McpServerTool.Create([Description("The current time in a fixed test clock.")] () => "12:34", new() { Name = "clock" }),
    ],
};
await using var server = McpServer.Create(new StdioServerTransport("longcat-test-tools"), options);
await server.RunAsync();
