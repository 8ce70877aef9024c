"""Output heads fused with their loss: the vocabulary-blocked linear cross-entropy."""
