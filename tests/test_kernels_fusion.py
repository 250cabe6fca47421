"""Lesson 14, operator fusion: bytes moved per op, fused vs unfused, the roofline."""

import pytest
import torch

from minillm.kernels import fusion as fu
from minillm.kernels.fusion import Chain, Op, fused_bytes, unfused_bytes
from minillm.utils import MiniLLMError


@pytest.mark.exercise("fusion.fused_bytes")
def test_fused_bytes_hand_example_reads_inputs_once_writes_results_once():
    # y = x + b; z = y * x; out = z + 1: x is read by two ops but fetched once.
    ch = Chain("toy", {"x": 40, "b": 4, "y": 40, "z": 40, "out": 40},
               [Op("add", ("x", "b"), ("y",)), Op("mul", ("y", "x"), ("z",)), Op("add1", ("z",), ("out",))],
               ("out",))
    assert unfused_bytes(ch) == (40 + 4 + 40) + (40 + 40 + 40) + (40 + 40)
    assert fused_bytes(ch) == 40 + 4 + 40


@pytest.mark.exercise("fusion.fused_bytes")
def test_fused_bytes_keeps_results_saved_for_backward_and_ops_without_inputs():
    ch = Chain("two results", {"x": 8, "u": 8, "y": 8, "stat": 2},
               [Op("rand", (), ("u",)), Op("f", ("x", "u"), ("y", "stat"))], ("y", "stat", "y"))
    assert fused_bytes(ch) == 8 + 8 + 2  # x in; y and stat out (once each); u never leaves the chip


@pytest.mark.exercise("fusion.fused_bytes")
@pytest.mark.parametrize("itemsize", [2, 4])
def test_fused_bytes_of_the_block_chains_by_hand(itemsize):
    N, C = 96, 40
    a, w = N * C * itemsize, C * itemsize
    assert fused_bytes(fu.softmax_chain(N, C, itemsize)) == 2 * a          # read scores, write weights
    assert fused_bytes(fu.rms_norm_chain(N, C, itemsize)) == 2 * a + w
    assert fused_bytes(fu.layer_norm_chain(N, C, itemsize)) == 2 * a + 2 * w
    assert fused_bytes(fu.bias_gelu_dropout_chain(N, C, itemsize)) == 2 * a + w  # mask from a seed
    rows = {r["chain"]: r for r in fu.fusion_table(N, C, itemsize)}
    assert rows["softmax"]["saving"] == pytest.approx(unfused_bytes(fu.softmax_chain(N, C, itemsize)) / (2 * a))


@pytest.mark.parametrize("name", list(fu.CHAINS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_unfused_count_equals_bytes_measured_op_by_op(name, dtype):
    N, C = 64, 48
    measured = fu.measure_bytes_moved(fu.EAGER[name], *fu.chain_inputs(name, N, C, dtype))
    chain = fu.CHAINS[name](N, C, torch.finfo(dtype).bits // 8)
    assert [b for _, b in measured] == [sum(chain.nbytes[t] for t in op.inputs + op.outputs) for op in chain.ops]
    assert [n for n, _ in measured][:1] == [{"bias_gelu_dropout": "add", "softmax": "amax", "rms_norm": "pow",
                                             "layer_norm": "mean"}[name]]


@pytest.mark.parametrize("name", ["softmax", "rms_norm", "layer_norm"])
def test_eager_chains_compute_what_they_say(name):
    x, *rest = fu.chain_inputs(name, 8, 16, torch.float64)
    ref = {"softmax": lambda: torch.softmax(x, -1),
           "rms_norm": lambda: torch.nn.functional.rms_norm(x, (16,), rest[0], 1e-5),
           "layer_norm": lambda: torch.nn.functional.layer_norm(x, (16,), rest[0], rest[1], 1e-5)}[name]()
    torch.testing.assert_close(fu.EAGER[name](x, *rest), ref, atol=1e-12, rtol=0)


def test_bias_gelu_dropout_keeps_the_expected_fraction_and_rescales():
    torch.manual_seed(0)
    x = torch.full((200, 100), 3.0)
    out = fu.bias_gelu_dropout_eager(x, torch.zeros(100), p=0.25)
    g = torch.nn.functional.gelu(torch.tensor(3.0), approximate="tanh")
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.01
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], float(g) / 0.75))


def test_roofline_ridge_and_regimes():
    peak, bw = fu.device_roof("H100 SXM", "bf16")
    assert (peak, bw) == (989.4e12, 3.35e12)
    assert fu.attainable_flops(1.0, peak, bw) == bw                  # memory bound: 1 FLOP per byte
    assert fu.attainable_flops(1e4, peak, bw) == peak                # compute bound
    # a GPT-2 MLP matmul (8192 tokens x 768 -> 3072, bf16) is right of the ridge (~295), softmax far left
    softmax_fused = fu.flops(fu.softmax_chain(8192, 1024, 2)) / (2 * 8192 * 1024 * 2)  # 5 FLOPs per 4 bytes
    assert softmax_fused == 1.25
    assert fu.matmul_intensity(8192, 768, 3072) > peak / bw > 100 * softmax_fused
    with pytest.raises(MiniLLMError, match="bandwidth"):
        fu.device_roof("TPU v9")


def test_plot_roofline_returns_a_labelled_figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = fu.plot_roofline({"softmax fused": 1.25, "matmul": 800.0})
    ax = fig.axes[0]
    assert "intensity" in ax.get_xlabel() and "TFLOP/s" in ax.get_ylabel()
    plt.close(fig)
