"""VideoChat-R1.5 (a Qwen2.5-VL fine-tune) as a model family: its prompts and reply tags, its frame geometry and
token arithmetic, and model inputs as vLLM builds them. Imports nothing of ours."""
