"""Answerers: a question and its keyframes in, an answer out (Venus IV-D, the cloud VLM)."""
