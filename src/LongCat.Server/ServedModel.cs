using LongCat.Inference;
using LongCat.Model;
using LongCat.Tokenization;

namespace LongCat.Server;

/// <summary>
/// A model ready to serve: the checkpoint, its tokenizer, one <see cref="BatchScheduler"/> and the
/// <see cref="LongCatChatClient"/> every route goes through. Disposing stops the scheduler and unmaps the weights.
/// </summary>
public sealed class ServedModel : IDisposable
{
    public ServedModel(LongCatModel model, Tokenizer tokenizer, SchedulerOptions scheduler, ChatClientOptions chat)
    {
        Model = model;
        Scheduler = new BatchScheduler(model, scheduler);
        try
        {
            Generator = new TextGenerator(Scheduler, tokenizer);
            if (chat.MaxTokensLimit >= Scheduler.ContextLength)
                chat = chat with { MaxTokensLimit = Scheduler.ContextLength - 1 };
            if (chat.DefaultMaxTokens > chat.MaxTokensLimit) chat = chat with { DefaultMaxTokens = chat.MaxTokensLimit };
            Client = new LongCatChatClient(Generator, chat);
        }
        catch
        {
            Scheduler.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads a checkpoint folder and its tokenizer (<paramref name="tokenizerPath"/>, else tokenizer.json in the
    /// folder). The model id defaults to the folder's name.
    /// </summary>
    public static ServedModel Load(string folder, string? tokenizerPath, SchedulerOptions scheduler, ChatClientOptions chat)
    {
        var tokPath = tokenizerPath ?? Path.Combine(folder, "tokenizer.json");
        if (tokenizerPath is null && !File.Exists(tokPath))
            throw new ArgumentException($"{folder}: no tokenizer.json in the model folder; give one with --tokenizer");
        var tokenizer = Tokenizer.Load(tokPath);
        chat = chat with { ToolCallStyle = ToolCallFormat.StyleOfModel(folder) };  // "tool_call_format" in tokenizer_config.json
        var model = LongCatModel.Load(folder);
        try
        {
            return new ServedModel(model, tokenizer, scheduler, chat);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public LongCatModel Model { get; }
    public BatchScheduler Scheduler { get; }
    public TextGenerator Generator { get; }
    public LongCatChatClient Client { get; }
    public string ModelId => Client.Options.ModelId;

    public void Dispose()
    {
        Scheduler.Dispose();
        Model.Dispose();
    }
}
