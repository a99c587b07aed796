"""The LoRA adapter registry: validate, list, add and remove adapters, and (un)load them in every vLLM replica."""
