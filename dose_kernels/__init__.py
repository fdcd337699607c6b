"""TG-43 dose calculation for I-125 seeds (numpy reference, numba CPU, CuPy GPU)."""
