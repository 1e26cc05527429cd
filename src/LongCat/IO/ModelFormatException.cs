namespace LongCat.IO;

/// <summary>A malformed or inconsistent model file. The message names the file and, where it applies, the tensor.</summary>
public sealed class ModelFormatException(string message, Exception? inner = null) : Exception(message, inner);
