"""LoRA fine-tuning of VideoChat-R1.5 on video datasets, exported as adapters vLLM serves by name."""

__version__ = "0.1.0"
