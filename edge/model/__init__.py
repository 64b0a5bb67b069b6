"""The model contract: input and output, the TFLite runtime shim, the engine, the manifest."""
