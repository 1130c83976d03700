"""The engine: one asyncio loop per process drives every backend's requests."""
