"""Custom-VJP kernels: closed-form backward passes of the cross-entropy family."""
