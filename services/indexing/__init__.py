"""indexing: scene segmentation and incremental clustering of the frame stream (Venus IV-B, edge)."""
