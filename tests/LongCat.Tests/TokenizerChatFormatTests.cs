using LongCat.Tokenization;

namespace LongCat.Tests;

/// <summary>LongCat's chat format: exact text, round trips, and training/inference encodings that agree.</summary>
public class TokenizerChatFormatTests
{
    static ChatTurn S(string c) => new(ChatTurn.System, c);
    static ChatTurn U(string c) => new(ChatTurn.User, c);
    static ChatTurn A(string c) => new(ChatTurn.Assistant, c);

    [Fact]
    public void RendersTheModelCardFormat()
    {
        Assert.Equal("[Round 0] USER:Hi ASSISTANT:", ChatFormat.Render([U("Hi")]));
        Assert.Equal("SYSTEM:Be brief. [Round 0] USER:Hi ASSISTANT:", ChatFormat.Render([S("Be brief."), U("Hi")]));
        Assert.Equal("SYSTEM:sys [Round 0] USER:q0 ASSISTANT:a0</longcat_s> [Round 1] USER:q1 ASSISTANT:",
            ChatFormat.Render([S("sys"), U("q0"), A("a0"), U("q1")]));
        Assert.Equal("[Round 0] USER:q0 ASSISTANT:a0</longcat_s>", ChatFormat.Render([U("q0"), A("a0")]));
        Assert.Equal("[Round 0] USER:q0", ChatFormat.Render([U("q0")], addGenerationPrompt: false));
    }

    [Fact]
    public void ParseInvertsRender()
    {
        List<ChatTurn>[] conversations =
        [
            [U("Hi")],
            [S("You are LongCat."), U("What is 2+2?"), A("4."), U("And 3+3?"), A("6.")],
            [U("多轮对话 😀"), A("好的\n第二行"), U("  spaces  "), A("")],
            [S("line1\nline2"), U("q")],
        ];
        foreach (var conv in conversations)
        {
            Assert.Equal(conv, ChatFormat.Parse(ChatFormat.Render(conv)));
            Assert.Equal(conv, ChatFormat.Parse(ChatFormat.Render(conv, addGenerationPrompt: false)));
        }
        Assert.Throws<FormatException>(() => ChatFormat.Parse("[Round 1] USER:x"));
        Assert.Throws<FormatException>(() => ChatFormat.Parse("[Round 0] USER:x ASSISTANT:reply without end"));
    }

    [Fact]
    public void BadConversationsAreRejected()
    {
        Assert.Throws<ArgumentException>(() => ChatFormat.Render([A("hello")]));
        Assert.Throws<ArgumentException>(() => ChatFormat.Render([U("a"), U("b")]));
        Assert.Throws<ArgumentException>(() => ChatFormat.Render([U("a"), S("late system")]));
        Assert.Throws<ArgumentException>(() => ChatFormat.Render([new ChatTurn("tool", "x")]));
    }

    [Fact]
    public void TrainingAndInferenceEncodeTheSamePrompt()
    {
        var tok = TokenizerParityTests.Load("longcat_style");
        List<ChatTurn> history = [S("Be kind."), U("Hello!"), A("Hi, how can I help?"), U("Tell me a joke.")];
        var prompt = ChatFormat.EncodePrompt(tok, history);
        var full = ChatFormat.EncodeForTraining(tok, [.. history, A("Why did the cat sit on the computer?")]);
        Assert.Equal(prompt, full.Ids[..prompt.Length]);
        // Exactly the assistant replies and their </longcat_s> are trainable.
        var trainedText = tok.Decode(full.Ids.Where((_, i) => full.Trainable[i]).ToArray());
        Assert.Equal("Hi, how can I help?</longcat_s>Why did the cat sit on the computer?</longcat_s>", trainedText);
        Assert.Equal(4, full.Ids[^1]);
        Assert.True(full.Trainable[^1]);
        Assert.Equal(ChatFormat.Render([.. history, A("Why did the cat sit on the computer?")]), tok.Decode(full.Ids));
    }
}
