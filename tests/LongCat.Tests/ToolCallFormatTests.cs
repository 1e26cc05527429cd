using LongCat.Tokenization;

namespace LongCat.Tests;

/// <summary>LongCat's tool format: golden strings for every render path, and the training mask.</summary>
public class ToolCallFormatTests
{
    static ChatTurn S(string c) => new(ChatTurn.System, c);
    static ChatTurn U(string c) => new(ChatTurn.User, c);
    static ChatTurn A(string c, params ToolCall[] calls) => new(ChatTurn.Assistant, c) { ToolCalls = calls };
    static ChatTurn T(string c, string id) => new(ChatTurn.Tool, c) { ToolCallId = id };

    static readonly ToolDefinition Weather = new("get_weather", "Get the weather of a city.",
        """{"type": "object", "properties": {"city": {"type": "string", "description": "城市"}, "days": {"type": "integer"}}, "required": ["city"]}""");
    static readonly ToolDefinition Clock = new("now", null, "{}");

    const string WeatherBlock =
        "#### Tool name: get_weather\n\n" +
        "Description: Get the weather of a city.\n\n" +
        "InputSchema: \n" +
        "{\n" +
        "  \"type\": \"object\",\n" +
        "  \"properties\": {\n" +
        "    \"city\": {\n" +
        "      \"type\": \"string\",\n" +
        "      \"description\": \"城市\"\n" +
        "    },\n" +
        "    \"days\": {\n" +
        "      \"type\": \"integer\"\n" +
        "    }\n" +
        "  },\n" +
        "  \"required\": [\n" +
        "    \"city\"\n" +
        "  ]\n" +
        "}\n\n";

    const string JsonNote =
        "**Note**: For each function call, return a json object with function name and arguments within <longcat_tool_call></longcat_tool_call> XML tags as follows:\n" +
        "<longcat_tool_call>\n" +
        "{\"name\": <function-name>, \"arguments\": <args-dict>}\n" +
        "</longcat_tool_call>\n" +
        "When multiple functions need to be called simultaneously, each function call should be wrapped in its own <longcat_tool_call> tag and placed consecutively.";

    const string Header = "## Tools\nYou have access to the following tools: \n\n### Tool namespace: function\n\n";

    static ChatRenderOptions Tools(ToolCallStyle style = ToolCallStyle.Json, params ToolDefinition[] tools) =>
        new() { Tools = tools.Length == 0 ? [Weather] : tools, ToolCallStyle = style };

    [Fact]
    public void ToolDescriptionIsTheModelCardText()
    {
        Assert.Equal(Header + WeatherBlock + JsonNote, ToolCallFormat.Description([Weather], ToolCallStyle.Json));
        // One block per tool; an empty description and schema.
        Assert.Equal(Header + WeatherBlock + "#### Tool name: now\n\nDescription: \n\nInputSchema: \n{}\n\n" + JsonNote,
            ToolCallFormat.Description([Weather, Clock], ToolCallStyle.Json));
    }

    [Fact]
    public void PromptWithToolsHasTheDescriptionThenMessages()
    {
        Assert.Equal(Header + WeatherBlock + JsonNote + "\n\n## Messages\n[Round 0] USER:Weather in Paris? ASSISTANT:",
            ChatFormat.Render([U("Weather in Paris?")], options: Tools()));
        Assert.Equal(Header + WeatherBlock + JsonNote + "\n\n## Messages\nSYSTEM:Be brief. [Round 0] USER:Hi ASSISTANT:",
            ChatFormat.Render([S("Be brief."), U("Hi")], options: Tools()));
        // No tools (tool_choice "none"): the plain format.
        Assert.Equal("[Round 0] USER:Hi ASSISTANT:", ChatFormat.Render([U("Hi")], options: new ChatRenderOptions()));
    }

    [Fact]
    public void AssistantCallsAndToolResultsRender()
    {
        var c1 = new ToolCall("call_1", "get_weather", """{"city":"Paris"}""");
        var c2 = new ToolCall("call_2", "get_weather", """{"city": "北京", "days": 2}""");
        List<ChatTurn> conv = [U("Weather in Paris and Beijing?"), A("", c1, c2), T("18C", "call_1"), T("{\"t\": 25}", "call_2"), A("Paris 18C, Beijing 25C.")];
        string expected = Header + WeatherBlock + JsonNote + "\n\n## Messages\n" +
            "[Round 0] USER:Weather in Paris and Beijing? ASSISTANT:" +
            "<longcat_tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</longcat_tool_call>" +
            "<longcat_tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"北京\", \"days\": 2}}\n</longcat_tool_call></longcat_s>" +
            " [Round 1] USER:<longcat_tool_response>\n18C\n</longcat_tool_response><longcat_tool_response>\n{\"t\": 25}\n</longcat_tool_response>" +
            " ASSISTANT:Paris 18C, Beijing 25C.</longcat_s>";
        Assert.Equal(expected, ChatFormat.Render(conv, options: Tools()));
        // Text before the calls; the results as the generation prompt; a user message after the results.
        Assert.Equal("[Round 0] USER:q ASSISTANT:Let me look.<longcat_tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</longcat_tool_call></longcat_s>" +
            " [Round 1] USER:<longcat_tool_response>\n12:00\n</longcat_tool_response>\nand in UTC? ASSISTANT:",
            ChatFormat.Render([U("q"), A("Let me look.", new ToolCall("c", "now", "{}")), T("12:00", "c"), U("and in UTC?")]));
        Assert.Equal("[Round 0] USER:q ASSISTANT:<longcat_tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</longcat_tool_call></longcat_s>" +
            " [Round 1] USER:<longcat_tool_response>\n12:00\n</longcat_tool_response> ASSISTANT:",
            ChatFormat.Render([U("q"), A("", new ToolCall("c", "now", "{}")), T("12:00", "c")]));
        // A tool result must answer calls.
        Assert.Throws<ArgumentException>(() => ChatFormat.Render([U("q"), A("a"), T("x", "c")]));
        Assert.Throws<ArgumentException>(() => ChatFormat.Render([U("q"), T("x", "c")]));
    }

    [Fact]
    public void XmlVariantRendersNameAndArgumentPairs()
    {
        var call = new ToolCall("c", "get_weather", """{"city": "Paris", "days": 2, "opts": {"unit": "C"}}""");
        Assert.Equal("<longcat_tool_call>get_weather\n" +
            "<longcat_arg_key>city</longcat_arg_key>\n<longcat_arg_value>Paris</longcat_arg_value>\n" +
            "<longcat_arg_key>days</longcat_arg_key>\n<longcat_arg_value>2</longcat_arg_value>\n" +
            "<longcat_arg_key>opts</longcat_arg_key>\n<longcat_arg_value>{\"unit\": \"C\"}</longcat_arg_value>\n" +
            "</longcat_tool_call>", ToolCallFormat.Call(call, ToolCallStyle.Xml));
        string xmlNote =
            "**Note**: For each function call, return the function name and its arguments within <longcat_tool_call></longcat_tool_call> XML tags as follows:\n" +
            "<longcat_tool_call><function-name>\n<longcat_arg_key><arg-key></longcat_arg_key>\n<longcat_arg_value><arg-value></longcat_arg_value>\n</longcat_tool_call>\n" +
            "When multiple functions need to be called simultaneously, each function call should be wrapped in its own <longcat_tool_call> tag and placed consecutively.";
        Assert.Equal(Header + WeatherBlock + xmlNote + "\n\n## Messages\n[Round 0] USER:q ASSISTANT:<longcat_tool_call>get_weather\n" +
            "<longcat_arg_key>city</longcat_arg_key>\n<longcat_arg_value>Paris</longcat_arg_value>\n</longcat_tool_call></longcat_s>" +
            " [Round 1] USER:<longcat_tool_response>\nsunny\n</longcat_tool_response> ASSISTANT:",
            ChatFormat.Render([U("q"), A("", new ToolCall("c", "get_weather", """{"city":"Paris"}""")), T("sunny", "c")], options: Tools(ToolCallStyle.Xml)));
    }

    [Fact]
    public void ThinkOnSuffixGoesOnTheLastUserMessageOfAPrompt()
    {
        var o = new ChatRenderOptions { ThinkOn = true };
        Assert.Equal("[Round 0] USER:a ASSISTANT:b</longcat_s> [Round 1] USER:c /think_on ASSISTANT:", ChatFormat.Render([U("a"), A("b"), U("c")], options: o));
        Assert.Equal("[Round 0] USER:a ASSISTANT:b</longcat_s>", ChatFormat.Render([U("a"), A("b")], addGenerationPrompt: false, options: o));
    }

    [Fact]
    public void StyleIsReadFromTheModelFolder()
    {
        var dir = Fixtures.NewTempDir();
        Assert.Equal(ToolCallStyle.Json, ToolCallFormat.StyleOfModel(dir));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"tool_call_format": "xml"}""");
        Assert.Equal(ToolCallStyle.Xml, ToolCallFormat.StyleOfModel(dir));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"tool_call_format": "yaml"}""");
        Assert.Contains("tool_call_format", Assert.Throws<ArgumentException>(() => ToolCallFormat.StyleOfModel(dir)).Message);
    }

    [Fact]
    public void TrainingMaskCoversRepliesAndCallsOnly()
    {
        var tok = TokenizerParityTests.Load("longcat_style");
        var call = new ToolCall("c", "get_weather", """{"city": "Paris"}""");
        List<ChatTurn> conv = [S("sys"), U("Weather?"), A("Checking.", call), T("sunny", "c"), A("It is sunny.")];
        var enc = ChatFormat.EncodeForTraining(tok, conv, Tools());
        var trained = tok.Decode(enc.Ids.Where((_, i) => enc.Trainable[i]).ToArray());
        Assert.Equal("Checking." + ToolCallFormat.Call(call, ToolCallStyle.Json) + "</longcat_s>It is sunny.</longcat_s>", trained);
        var untrained = tok.Decode(enc.Ids.Where((_, i) => !enc.Trainable[i]).ToArray());
        Assert.StartsWith("## Tools\n", untrained);
        Assert.Contains("<longcat_tool_response>\nsunny\n</longcat_tool_response>", untrained);
        Assert.Contains("SYSTEM:sys", untrained);
        Assert.Equal(ChatFormat.Render(conv, addGenerationPrompt: false, Tools()), tok.Decode(enc.Ids));
        // The prompt before the final reply is the same ids as generation uses.
        var prompt = ChatFormat.EncodePrompt(tok, conv[..4], Tools());
        Assert.Equal(prompt, enc.Ids[..prompt.Length]);
    }
}
