"""Model interfaces and backends: detectors, embedders, structurers, answerers, the Qwen and Triton runtimes.

Every service imports its models from here and never from another service: a backend written
once serves gating, indexing, memory and reasoning alike. Heavy dependencies (torch, transformers,
tritonclient) are imported when a backend is built, never when this package is imported.
"""
