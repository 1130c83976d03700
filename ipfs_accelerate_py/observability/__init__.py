"""Watching a client from the tools people already run: OpenTelemetry spans
and metrics by the GenAI semantic conventions (:mod:`.otel`, extra
``[otel]``), a Prometheus collector (:mod:`.prometheus`, extra
``[prometheus]``) and user hooks (:mod:`.hooks`).

Each listens to the engine's events (:mod:`ipfs_accelerate_py.engine.events`);
none is imported by the core unless used, and the core runs without their
extras installed.
"""
