"""Builds and starts the vLLM server command line (GPU or CPU), and makes the tiny test model."""
