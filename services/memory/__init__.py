"""memory: the edge hierarchical memory (Venus IV-C2/IV-D): vector store, raw frames, retrieval."""
