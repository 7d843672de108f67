"""The cloud adapter registry: stores LoRA adapter bundles by digest, announces them, serves them to edges."""
