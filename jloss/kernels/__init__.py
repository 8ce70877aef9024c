"""Kernels with closed-form derivatives (custom VJPs / JVPs): cross-entropies, CTC, overlaps, hinges."""
