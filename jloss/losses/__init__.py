"""Public loss functions, one module per family."""
