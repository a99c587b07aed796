"""vChat gateway: an OpenAI-compatible video question-answering service in front of vLLM."""
