"""dave's network: reads memory it does not own (a C-level crash, as a buggy extension would)."""
import ctypes


def loss_and_grads(params, X, Y):
    return ctypes.string_at(0)  # a segmentation fault
