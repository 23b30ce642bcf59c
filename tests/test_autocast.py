"""engine.autocast's bookkeeping (nesting, decorators, threads, what the autograd walk replays),
engine.bfloat16 as a compute precision only, and the command line's --device/--dtype handling:
all of it runs without a GPU. What autocast computes on a GPU is in test_cuda_attention.py and at
the end of this file."""
import threading

import numpy as np
import pytest

import engine
from engine import amp
from engine.autograd import Function

from cuda_support import GPU, needs_gpu


def test_autocast_sets_and_restores_the_precision_when_nested():
    assert amp.current() is None and not engine.is_autocast_enabled("cuda")
    with engine.autocast("cuda", dtype=engine.bfloat16):
        assert amp.current() == "bf16"
        assert engine.is_autocast_enabled() and engine.get_autocast_dtype("cuda") is engine.bfloat16
        with engine.autocast("cuda", enabled=False):
            assert amp.current() is None and engine.get_autocast_dtype() is None
        with engine.autocast("cpu", enabled=False):
            assert amp.current() is None
        assert amp.current() == "bf16"
        assert not engine.is_autocast_enabled("cpu")
    assert amp.current() is None


def test_autocast_restores_the_precision_when_the_block_raises():
    with pytest.raises(KeyError):
        with engine.autocast("cuda:0"):
            raise KeyError("x")
    assert amp.current() is None


def test_autocast_as_a_decorator_and_one_object_entered_twice():
    ctx = engine.autocast("cuda")

    @ctx
    def inside():
        return amp.current()

    assert inside() == "bf16" and amp.current() is None
    with ctx:
        with ctx:
            assert amp.current() == "bf16"
        assert amp.current() == "bf16"
    assert amp.current() is None


def test_autocast_is_per_thread():
    seen = []
    with engine.autocast("cuda"):
        worker = threading.Thread(target=lambda: seen.append(amp.current()))
        worker.start()
        worker.join()
    assert seen == [None]


@pytest.mark.parametrize("args,kwargs,error,message", [
    (("tpu",), {}, ValueError, r"autocast: device_type must be 'cuda' or 'cpu', got 'tpu'"),
    (("cuda",), dict(dtype=engine.float16), ValueError, r"autocast: only dtype=engine.bfloat16 is supported"),
    (("cuda",), dict(enabled=1), TypeError, r"autocast: enabled must be a bool, got int"),
    (("cpu",), {}, NotImplementedError, r"autocast\('cpu'\): the CPU kernels compute in float32/float64 only"),
])
def test_autocast_refuses_what_it_cannot_do(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        engine.autocast(*args, **kwargs)


def test_bfloat16_names_a_precision_and_is_no_storage_dtype():
    assert repr(engine.bfloat16) == "engine.bfloat16"
    for make in (lambda: engine.zeros(2, dtype=engine.bfloat16), lambda: engine.ones(2).to(engine.bfloat16)):
        with pytest.raises(TypeError, match=r"engine.bfloat16 is a compute precision for engine.autocast"):
            make()


class _RecordPrecision(Function):
    """Identity whose forward and backward record the autocast precision they ran in."""
    seen = []

    def forward(self, x):
        _RecordPrecision.seen.append(("forward", amp.current()))
        return x.copy()

    def backward(self, grad):
        _RecordPrecision.seen.append(("backward", amp.current()))
        return grad


def test_backward_runs_in_the_precision_its_forward_ran_in():
    _RecordPrecision.seen = []
    x = engine.ones(3, requires_grad=True)
    with engine.autocast("cuda"):
        a = _RecordPrecision.apply(x)
    b = _RecordPrecision.apply(a * 2)
    b.sum().backward()  # outside the block
    assert _RecordPrecision.seen == [("forward", "bf16"), ("forward", None), ("backward", None),
                                     ("backward", "bf16")]
    assert amp.current() is None
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])


def test_autocast_leaves_cpu_results_unchanged():
    rng = np.random.default_rng(0)
    q, k, v = (engine.tensor(rng.standard_normal((1, 2, 5, 8)).astype(np.float32)) for _ in range(3))
    plain = engine.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    with engine.autocast("cuda"):
        cast = engine.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        product = q @ k.transpose(-2, -1)
    np.testing.assert_array_equal(plain.numpy(), cast.numpy())
    np.testing.assert_array_equal(product.numpy(), (q @ k.transpose(-2, -1)).numpy())


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def _train_args(*argv):
    from engine.cli import build_parser

    return build_parser().parse_args(["train", *argv])


def test_train_dtype_option_defaults_to_fp32_and_takes_bf16():
    assert _train_args("gpt").dtype == "fp32"
    assert _train_args("gpt", "--device", "cuda", "--dtype", "bf16").dtype == "bf16"
    with pytest.raises(SystemExit):
        _train_args("gpt", "--dtype", "fp16")


def test_train_bf16_on_the_cpu_is_refused_with_the_reason():
    from engine.train import check_device_args

    with pytest.raises(SystemExit, match=r"--dtype bf16: autocast runs matmul and attention in bf16 on the GPU only"):
        check_device_args(_train_args("gpt", "--dtype", "bf16"))
    check_device_args(_train_args("gpt"))  # fp32 on the CPU: nothing to refuse


@pytest.mark.skipif(GPU, reason="checks the message given where CUDA is missing")
@pytest.mark.parametrize("model", ["mlp", "gpt"])
def test_train_on_cuda_without_it_says_why(model):
    from engine.train import check_device_args

    with pytest.raises(SystemExit, match=r"--device cuda: CUDA is not available: ") as e:
        check_device_args(_train_args(model, "--device", "cuda", "--dtype", "bf16"))
    assert engine.cuda.unavailable_reason() in str(e.value)


@pytest.mark.skipif(GPU, reason="checks the message given where CUDA is missing")
@pytest.mark.parametrize("suite", ["attention", "train"])
def test_bench_gpu_suites_without_a_gpu_say_why_and_exit_1(suite, capsys):
    from engine.cli import main

    assert main(["bench", "--device", "cuda", "--suite", suite]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("engine bench --device cuda: CUDA is not available: ")


def test_gpu_bench_tables_format_attention_and_train_rows():
    from engine.benchmarks.gpu import _row, format_table
    from engine.benchmarks.gpu_train import format_train_table

    row = _row("attention", "B8 H12 T1024 D64 fwd", "bf16", 1e12, {"engine": 0.5, "torch": 0.4, "cupy": 2.0}, 1e-3)
    row["peak_mib"] = {"engine": 37.0, "torch": 40.0, "cupy": 3100.0}
    table = format_table([row])
    assert "engine MiB" in table and "3100" in table and "0.80x" in table and "4.0x" in table
    train = {"suite": "train", "case": "gpt B16 T256", "precision": "bf16", "seconds": {"engine": 0.02, "torch": 0.01},
             "tokens_per_s": {"engine": 2e5, "torch": 4e5}, "loss_diff": 1e-4}
    assert "0.50x" in format_train_table([train])


# ---------------------------------------------------------------------------------------------
# GPU: end to end
# ---------------------------------------------------------------------------------------------
@needs_gpu
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_train_gpt_on_the_gpu_end_to_end(dtype, tmp_path):
    from engine.train import fill_defaults, train_gpt

    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    args = fill_defaults(_train_args("gpt", "--device", "cuda", "--dtype", dtype, "--text", str(text), "--steps", "30",
                                     "--batch-size", "8", "--block-size", "64", "--n-layer", "2", "--n-embd", "64",
                                     "--no-progress"))
    result = train_gpt(args, log=lambda *_: None)
    assert np.isfinite(result["val_loss"]) and result["val_loss"] < result["unigram_entropy"]


@needs_gpu
def test_autocast_matmul_on_the_gpu_multiplies_in_bf16():
    rng = np.random.default_rng(1)
    a, b = (engine.tensor(rng.standard_normal((64, 64)).astype(np.float32), device="cuda") for _ in range(2))
    with engine.autocast("cuda"):
        cast = (a @ b).numpy()
    with engine.cuda.matmul_precision("bf16"):
        bf16 = (a @ b).numpy()
    np.testing.assert_array_equal(cast, bf16)
