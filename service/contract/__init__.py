"""The wire contract: event models, decoding of input bytes, encoding of output events."""
