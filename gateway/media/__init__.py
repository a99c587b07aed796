"""Video frame planning for VideoChat-R1.5: how many frames, which ones, and at what size."""
