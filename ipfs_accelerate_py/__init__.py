"""ipfs_accelerate_py: one resilient client layer over model-serving APIs."""

__version__ = "0.1.0"
