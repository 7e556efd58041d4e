"""The torch and JAX references return the engine's trace: same names, shapes, dtypes and values.

In float64 the three implementations of the same maths agree to a few units
of rounding, so a tight bound |ref - engine| <= 1e-12 (1 + |engine|) is used
here; the tolerance policy for real checks lives in the comparator.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import manual_backprop
from manual_backprop import references
from manual_backprop.description.case import Case, make_case
from manual_backprop.description.netfile import load_case
from manual_backprop.description.network import Network
from manual_backprop.engine.trace import run as engine_run
from manual_backprop.errors import InputError
from manual_backprop.kernels import ACTIVATIONS, LOSSES
from manual_backprop.kernels.losses import REDUCTIONS, one_hot

EXAMPLES = sorted((Path(manual_backprop.__file__).parent / "examples").glob("seed-*.toml"))

#: Between them: every activation, every loss, both reductions, batch 1 and odd batches.
RANDOM_NETWORKS = [
    # sizes, activations, loss, reduction, batch
    ((3, 5, 4, 2), ("tanh", "sigmoid", "identity"), "half_mse", "mean", 5),
    ((4, 6, 3), ("relu", "softmax"), "mse", "sum", 7),
    ((2, 3, 2), ("identity", "tanh"), "mse", "mean", 1),
    ((5, 4, 3), ("sigmoid", "sigmoid"), "bce", "sum", 6),
    ((3, 4, 1), ("relu", "sigmoid"), "bce", "mean", 8),
    ((6, 8, 5, 4), ("relu", "tanh", "softmax"), "softmax_cross_entropy", "sum", 9),
    ((2, 3), ("softmax",), "softmax_cross_entropy", "mean", 4),
    ((4, 3, 2), ("sigmoid", "relu"), "half_mse", "sum", 3),
    ((3, 5, 4, 2), ("leaky_relu", "softplus", "identity"), "half_mse", "mean", 6),
    ((4, 5, 3), ("softplus", "leaky_relu"), "mse", "sum", 2),
]


@pytest.fixture(params=["torch", "jax"])
def ref(request):
    """Each framework reference in turn; skipped cleanly when the framework is absent."""
    pytest.importorskip(request.param)
    return references.load(request.param)


def case_of(sizes, activations, loss, reduction="mean", batch=4, seed=0, dtype="float64") -> Case:
    return make_case(Network(sizes, activations, loss, reduction, dtype), seed=seed, batch=batch)


def assert_same_trace(got: dict, want: dict, rtol: float = 1e-12) -> None:
    """Same names in the same order, same shapes and dtypes, values within rtol * (1 + |want|)."""
    assert list(got) == list(want)
    for name, b in want.items():
        a = got[name]
        assert isinstance(a, np.ndarray), f"{name} is a {type(a).__name__}"
        assert a.shape == b.shape, f"{name}: shape {a.shape}, engine {b.shape}"
        assert a.dtype == b.dtype, f"{name}: dtype {a.dtype}, engine {b.dtype}"
        err = np.abs(a.astype(np.float64) - b.astype(np.float64))
        assert np.all(err <= rtol * (1 + np.abs(b))), f"{name}: max |ref - engine| = {err.max():.3g}"


# --- the trace -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_reference_trace_equals_engine_trace_on_each_shipped_example(ref, path):
    case = load_case(path)
    assert_same_trace(ref.run(case), engine_run(case))


@pytest.mark.parametrize("seed, spec", list(enumerate(RANDOM_NETWORKS)),
                         ids=[f"{'-'.join(map(str, s[0]))}-{s[2]}-{s[3]}" for s in RANDOM_NETWORKS])
def test_reference_trace_equals_engine_trace_on_random_network(ref, seed, spec):
    sizes, activations, loss, reduction, batch = spec
    case = case_of(sizes, activations, loss, reduction, batch, seed=seed)
    assert_same_trace(ref.run(case), engine_run(case))


def test_random_networks_cover_every_activation_loss_and_reduction():
    assert {a for spec in RANDOM_NETWORKS for a in spec[1]} == set(ACTIVATIONS)
    assert {spec[2] for spec in RANDOM_NETWORKS} == set(LOSSES)
    assert {spec[3] for spec in RANDOM_NETWORKS} == set(REDUCTIONS)
    assert {(spec[2], spec[3]) for spec in RANDOM_NETWORKS} >= {(l, r) for l in LOSSES for r in REDUCTIONS}


FRAMEWORKS = ["torch", "jax"]


def framework_module(name: str):
    pytest.importorskip(name)
    return references.load(name)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_framework_reference_has_a_line_for_every_registered_activation(framework, activation):
    # A new activation in the kernels' registry fails here, by name, until each framework has its line.
    assert activation in framework_module(framework).ACTIVATIONS


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_framework_reference_has_a_line_for_every_registered_loss(framework, loss):
    assert loss in framework_module(framework).LOSS_SUMS


def test_framework_tables_hold_nothing_the_registry_lacks(ref):
    assert set(ref.ACTIVATIONS) <= set(ACTIVATIONS) and set(ref.LOSS_SUMS) <= set(LOSSES)


@pytest.mark.parametrize("table, name, kind", [("ACTIVATIONS", "tanh", "activation"),
                                               ("LOSS_SUMS", "mse", "loss")])
def test_a_registered_name_missing_from_a_framework_table_is_a_one_line_input_error(ref, monkeypatch,
                                                                                  table, name, kind):
    monkeypatch.delitem(getattr(ref, table), name)
    framework = ref.__name__.rpartition(".")[2].removesuffix("_ref")
    # A shape used nowhere else, so that no compiled JAX function is reused.
    case = case_of((2, 7, 3), ("tanh", "sigmoid"), "mse", batch=3, seed=1)
    want = f"the {framework} reference has no line for {kind} {name!r}; add one to {framework}_ref.{table}"
    for call in (ref.run, ref.per_sample_gradients, ref.gradients):
        with pytest.raises(InputError) as info:
            call(case)
        assert str(info.value) == want


def test_the_normaliser_is_1_under_sum_and_1_over_N_or_N_K_under_mean():
    def c(loss, reduction, N, K=3):
        last = {"bce": "sigmoid", "softmax_cross_entropy": "softmax"}.get(loss, "identity")
        return Network((2, K), (last,), loss, reduction).normaliser(N)

    assert {loss: c(loss, "sum", 4) for loss in LOSSES} == {loss: 1.0 for loss in LOSSES}
    assert {loss: c(loss, "mean", 4) for loss in LOSSES} == {
        "half_mse": 1 / 4, "mse": 1 / 12, "bce": 1 / 12, "softmax_cross_entropy": 1 / 4}


def test_a_fused_loss_has_dAL_too_the_unfused_derivative_before_dZL(ref):
    # softmax CE: dL/dA2 = -(1/N) Y / A2 (one-hot Y: -1/(N A2) at the label, 0 elsewhere)
    case = case_of((3, 4, 2), ("relu", "softmax"), "softmax_cross_entropy")
    trace = ref.run(case)
    names = list(trace)
    assert names.index("dA2") == names.index("dZ2") - 1 and "dA1" in trace
    np.testing.assert_allclose(trace["dA2"], -case.T / trace["A2"] / case.batch, rtol=1e-12)


def test_float32_case_keeps_float32_in_every_tensor(ref):
    case = case_of((4, 6, 3), ("tanh", "softmax"), "softmax_cross_entropy", batch=5, dtype="float32")
    trace = ref.run(case)
    assert {name: a.dtype for name, a in trace.items() if name != "Y"} == {
        name: np.dtype(np.float32) for name in trace if name != "Y"}
    assert_same_trace(trace, engine_run(case), rtol=1e-5)


def test_loss_is_a_zero_dimensional_array(ref):
    L = ref.run(case_of((2, 3, 1), ("sigmoid", "identity"), "half_mse"))["L"]
    assert isinstance(L, np.ndarray) and L.shape == ()


def test_Y_is_returned_as_given(ref):
    case = case_of((3, 4, 2), ("relu", "softmax"), "softmax_cross_entropy")
    Y = ref.run(case)["Y"]
    assert Y.dtype == np.int64 and np.array_equal(Y, case.Y)


# --- conventions at the edges ------------------------------------------------------------------

def test_relu_gradient_is_zero_at_exactly_zero_pre_activation(ref):
    base = case_of((3, 5, 2), ("relu", "identity"), "half_mse", batch=4, seed=3)
    X = base.X.copy()
    X[[0, 2]] = 0
    params = {**base.params, "b1": np.zeros(5)}
    case = make_case(base.network, params, X, base.Y)
    trace = ref.run(case)
    assert np.all(trace["Z1"][[0, 2]] == 0)
    assert np.all(trace["dA1"][[0, 2]] != 0)  # a gradient arrives, and the mask stops it
    assert np.all(trace["dZ1"][[0, 2]] == 0)
    assert_same_trace(trace, engine_run(case))


def test_integer_labels_and_one_hot_targets_give_the_same_gradients(ref):
    labelled = case_of((4, 5, 3), ("tanh", "softmax"), "softmax_cross_entropy", batch=6, seed=7)
    one_hot_Y = make_case(labelled.network, labelled.params, labelled.X, one_hot(labelled.Y, 3, np.float64))
    a, b = ref.run(labelled), ref.run(one_hot_Y)
    for name in labelled.network.names():
        if name != "Y":
            np.testing.assert_allclose(a[name], b[name], rtol=1e-14, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("loss, last", [("bce", "sigmoid"), ("softmax_cross_entropy", "softmax")])
def test_saturated_logits_of_a_thousand_give_finite_values(ref, loss, last):
    base = case_of((3, 4, 2), ("tanh", last), loss, batch=6, seed=11)
    params = {**base.params, "W2": 1e3 * np.sign(base.params["W2"])}
    case = make_case(base.network, params, base.X, base.Y)
    trace = ref.run(case)
    assert np.abs(trace["Z2"]).max() > 1e3
    # dL/dA2 of the unfused loss is infinite where the output saturates to exactly 0 or 1 (test_dAL.py);
    # every other tensor stays finite, and the same as the engine's
    trace.pop("dA2")
    engine = engine_run(case)
    engine.pop("dA2")
    assert all(np.all(np.isfinite(a)) for a in trace.values())
    assert_same_trace(trace, engine)


# --- devices and versions ----------------------------------------------------------------------

def test_cpu_is_the_default_device(ref):
    case = case_of((2, 3, 1), ("sigmoid", "identity"), "half_mse")
    assert_same_trace(ref.run(case, device="cpu"), ref.run(case))


def test_gpu_without_a_gpu_is_an_input_error(ref):
    case = case_of((2, 3, 1), ("sigmoid", "identity"), "half_mse")
    try:
        ref._device("gpu")
    except InputError as exc:
        assert "no GPU" in str(exc)
    else:
        pytest.skip("this machine has a GPU")
    with pytest.raises(InputError, match="no GPU"):
        ref.run(case, device="cuda")


def test_unknown_device_is_an_input_error(ref):
    with pytest.raises(InputError, match="unknown device 'tpu7'"):
        ref.run(case_of((2, 3, 1), ("sigmoid", "identity"), "half_mse"), device="tpu7")


def test_version_is_the_framework_version(ref):
    framework = {"manual_backprop.references.torch_ref": "torch", "manual_backprop.references.jax_ref": "jax"}[ref.__name__]
    assert ref.version() == sys.modules[framework].__version__


def test_torch_gradient_of_the_wrong_dtype_is_a_clear_error():
    torch = pytest.importorskip("torch")
    from manual_backprop.references import torch_ref
    with pytest.raises(TypeError, match="dW1 came back as float32, but the network is float64"):
        torch_ref._numpy(torch.zeros(2, dtype=torch.float32), "dW1", np.dtype(np.float64))


def test_jax_gradient_of_the_wrong_dtype_is_a_clear_error():
    jnp = pytest.importorskip("jax.numpy")
    from manual_backprop.references import jax_ref
    with pytest.raises(TypeError, match="dW1 came back as float32, but the network is float64"):
        jax_ref._numpy(jnp.zeros(2, dtype=jnp.float32), "dW1", np.dtype(np.float64))


# --- the registry ------------------------------------------------------------------------------

def test_registry_names_torch_jax_and_fd():
    assert references.NAMES == ("torch", "jax", "fd")


def test_finite_differences_are_always_installed():
    assert references.is_installed("fd")
    assert callable(references.load("fd").run)


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_is_installed_says_whether_the_framework_can_be_found(name):
    assert references.is_installed(name) == (importlib.util.find_spec(name) is not None)


def test_is_installed_does_not_import_the_frameworks():
    code = ("import sys; from manual_backprop import references; [references.is_installed(n) for n in references.NAMES]; "
            "print(sorted({'torch', 'jax'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_load_returns_the_reference_module(name):
    pytest.importorskip(name)
    module = references.load(name)
    assert callable(module.run) and callable(module.version)


@pytest.mark.parametrize("call", [references.load, references.is_installed])
def test_unknown_reference_is_an_input_error_listing_the_known_ones(call):
    with pytest.raises(InputError, match=r"^unknown reference 'tf'; known: torch, jax, fd$"):
        call("tf")


@pytest.mark.parametrize("name, hint", [
    ("torch", "pip install 'manual-backprop[torch]' (CPU build: add -c constraints.txt)"),
    ("jax", "pip install 'manual-backprop[jax]'"),
], ids=["torch", "jax"])
def test_missing_framework_is_a_one_line_input_error_with_the_install_hint(monkeypatch, name, hint):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == name else real(n, *a))
    assert not references.is_installed(name)
    with pytest.raises(references.MissingReference) as info:
        references.load(name)
    assert isinstance(info.value, InputError)
    assert str(info.value) == f"reference {name!r} is not installed: {hint}"
    assert references.INSTALL_HINTS[name] == hint
