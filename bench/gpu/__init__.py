"""The GPU benchmark: the whole product (vLLM through vllm_launch, the gateway) on one GPU at the 7B shape."""
