"""The seeds' own numbers, reproduced by the engine to the digits they were printed with."""

from __future__ import annotations

import numpy as np
import pytest

from manual_backprop import load_case, run
from manual_backprop.description.catalog import example_path, load_example
from manual_backprop.kernels.activations import softmax_forward
from manual_backprop.kernels.losses import LOSSES

# Seed 002's notebook output, as printed (numpy prints 8 decimals, dropping trailing zeros).
SEED_002 = {
    "Z1": [[0.0375, 0.045, 0.0525], [0.0825, 0.1, 0.1175], [0.1275, 0.155, 0.1825], [0.1725, 0.21, 0.2475]],
    "A1": [[0.5093739, 0.5112481, 0.51312199], [0.52061331, 0.52497919, 0.52934125],
           [0.53183189, 0.53867261, 0.54549879], [0.54301838, 0.55230791, 0.56156107]],
    "Z2": [[0.7670594], [0.78790327], [0.80868499], [0.82937081]],
    "A2": [[0.7670594], [0.78790327], [0.80868499], [0.82937081]],
    "dA2": [[0.18926485], [0.19197582], [0.19467125], [0.1973427]],
    "dW2": [[0.40704483], [0.41140261], [0.41574958]],
    "db2": [0.77325462],
    "dA1": [[0.08516918, 0.09463242, 0.10409567], [0.08638912, 0.09598791, 0.1055867],
            [0.08760206, 0.09733562, 0.10706919], [0.08880422, 0.09867135, 0.10853849]],
    "dZ1": [[0.02128481, 0.02364613, 0.02600599], [0.02156057, 0.02393708, 0.02630577],
            [0.02181175, 0.02418833, 0.02654565], [0.02203671, 0.02439786, 0.02672329]],
    "dW1": [[0.01746411, 0.0193592, 0.02123573], [0.02179881, 0.02416767, 0.02651476]],
    "db1": [0.08669385, 0.09616941, 0.1055807],
}


@pytest.mark.parametrize("name", sorted(SEED_002))
def test_seed_002_tensor_matches_the_notebook_to_8_decimals(name):
    trace = run(load_example("seed-002"))
    np.testing.assert_array_equal(np.round(trace[name], 8), np.asarray(SEED_002[name]))


def test_seed_002_loss_matches_the_notebook_to_every_printed_digit():
    # The notebook printed np.float64(0.29903386964167666): all 17 significant digits.
    L = float(run(load_example("seed-002"))["L"])
    assert L == pytest.approx(0.29903386964167666, rel=4 * np.finfo(np.float64).eps)


def test_seed_002_dZ2_is_dA2_because_the_output_is_linear():
    trace = run(load_example("seed-002"))
    np.testing.assert_array_equal(trace["dZ2"], trace["dA2"])


def test_seed_003_fused_softmax_cross_entropy_gradient_is_P_minus_Y():
    # Seed 003: Y_pred = [0.5, 0.5, 0], Y_target = [0, 1, 0] -> dL/dz3 = [0.5, -0.5, 0].
    # No finite logits give P exactly, so the fused kernel is fed P directly.
    P = np.array([[0.5, 0.5, 0.0]])
    Y = np.array([[0.0, 1.0, 0.0]])
    loss = LOSSES["softmax_cross_entropy"]
    dZ = loss.gradient(np.zeros_like(P), P, Y, "mean")
    np.testing.assert_array_equal(dZ, [[0.5, -0.5, 0.0]])


def test_seed_003_example_network_tells_the_seed_story():
    # Our weights for seed 003 (the seed's were in a picture) make its printed P and its
    # commenters' masked gradients come out: dZ2 = [1, 0], dZ1 = [1, 0, 2, 0].
    t = run(load_example("seed-003"))
    np.testing.assert_allclose(t["A3"], [[0.5, 0.5, 0.0]], atol=1e-9)
    np.testing.assert_allclose(t["dZ3"], [[0.5, -0.5, 0.0]], atol=1e-9)
    np.testing.assert_allclose(t["dA1"], [[1.0, -2.0, 2.0, -1.0]], atol=1e-9)
    np.testing.assert_array_equal(t["dZ2"] != 0, [[True, False]])
    np.testing.assert_allclose(t["dZ2"], [[1.0, 0.0]], atol=1e-9)
    np.testing.assert_allclose(t["dZ1"], [[1.0, 0.0, 2.0, 0.0]], atol=1e-9)


def test_softmax_of_two_equal_logits_and_one_far_below_is_half_half_and_nearly_zero():
    P = softmax_forward(np.array([[2.0, 2.0, -20.0]]))
    assert P[0, 0] == P[0, 1]
    assert P[0, 2] == pytest.approx(np.exp(-22) / (2 + np.exp(-22)), rel=1e-12)


def test_seed_000_network_gives_what_its_weights_imply_not_its_table():
    # x = 0 and b = 0: z1 = 0, h = sigmoid(0) = 0.5, z2 = 0.5 * (W2 row sums) = [0.25, 0.05].
    t = run(load_example("seed-000"))
    np.testing.assert_array_equal(t["A1"], [[0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_allclose(t["Z2"], [[0.25, 0.05], [0.25, 0.05]], rtol=1e-15)
    # summed half-MSE: dE/dz2 = z2 - y = [-0.75, 0.05] per sample.
    np.testing.assert_allclose(t["dA2"], [[-0.75, 0.05], [-0.75, 0.05]], rtol=1e-15)


def test_the_shipped_example_files_load_from_their_paths():
    for name in ("seed-000", "seed-002", "seed-003", "seed-004"):
        case = load_case(example_path(name))
        assert case.network.describe() == load_example(name).network.describe()
