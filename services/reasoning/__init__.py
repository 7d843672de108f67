"""reasoning (cloud): answers questions about the past from edge-memory keyframes with a VLM."""
