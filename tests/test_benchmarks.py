"""The benchmark runner: outputs are checked before timing, rows carry their unit, tables and
JSON are written; and the suites' implementations agree on a small case."""
import json

import numpy as np
import pytest

from engine.benchmarks import gemm, timing, train
from engine.benchmarks.runner import Case, format_table, peak_fraction, run_case, speedup, write_json


def _case(engine_fn, unit="GFLOP/s"):
    a = np.arange(6.0).reshape(2, 3)
    return Case("demo", "2x3", 12.0, {"numpy": lambda: a * 2, "engine": engine_fn}, 1, unit=unit)


def test_agreeing_implementations_are_timed_without_a_mismatch():
    row = run_case(_case(lambda: np.arange(6.0).reshape(2, 3) * 2), rounds=1, min_time=0.0)
    assert row["mismatch"] == []
    assert set(row["rate"]) == {"numpy", "engine"} and all(r > 0 for r in row["rate"].values())


def test_a_wrong_result_is_reported_as_a_mismatch():
    row = run_case(_case(lambda: np.zeros((2, 3))), rounds=1, min_time=0.0)
    assert row["mismatch"] == ["engine"]
    assert "MISMATCH: engine" in format_table([row], {})


def test_tables_name_their_unit_and_peak_only_for_flops(tmp_path):
    same = lambda: np.arange(6.0).reshape(2, 3) * 2  # noqa: E731
    flops = run_case(_case(same), rounds=1, min_time=0.0)
    samples = run_case(_case(same, unit="ms/step"), rounds=1, min_time=0.0)
    samples["suite"] = "other"
    table = format_table([flops, samples], {("float32", 1): 100.0})
    assert "numpy GFLOP/s" in table and "%peak" in table.split("\n\n")[0]
    assert "engine ms/step" in table and "%peak" not in table.split("\n\n")[1]
    write_json(tmp_path / "out.json", [flops], {("float32", 1): 100.0}, {"cpu": "test"})
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["results"][0]["unit"] == "GFLOP/s" and doc["fma_peak_gflops"][0]["gflops"] == 100.0


def test_calls_right_after_the_switching_pause_are_not_timed(monkeypatch):
    """Threads woken after the pause may share a core for a few ms (the first calls of a 0.5 ms
    kernel took 5-6 ms on a 2-core VM): such calls settle the implementation untimed, so a
    transient after each pause does not become its median. The clock is the test's own (a call
    takes 1 µs, or 4 ms right after a pause), so the host's load cannot make it fail."""
    slow_calls_left, now = [0], [0.0]
    monkeypatch.setattr(timing.time, "sleep", lambda seconds: slow_calls_left.__setitem__(0, 3))
    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])

    def fn():
        now[0] += 0.004 if slow_calls_left[0] else 1e-6
        slow_calls_left[0] = max(0, slow_calls_left[0] - 1)

    seconds = timing.interleaved_samples({"fn": fn}, rounds=3, min_time=0.002, warmup=0)
    assert len(seconds["fn"]) == 3 and max(seconds["fn"]) < 0.001


def test_ratios_pair_the_implementations_round_by_round():
    """The host slows down tenfold in the middle of round 2, after engine's turn: engine is twice
    as fast as NumPy in rounds 1 and 3, and the per-round ratio says so, where the ratio of the
    medians (1 s against 20 s) would say 20x."""
    row = {"rate": {"engine": 1.0, "numpy": 0.05},
           "round_seconds": {"engine": [1.0, 1.0, 10.0], "numpy": [2.0, 20.0, 20.0]}}
    assert speedup(row, "engine", "numpy") == 2.0
    assert speedup({"rate": row["rate"]}, "engine", "numpy") == 20.0  # no rounds: the medians


def test_the_peak_is_probed_in_every_round_of_a_flops_case_only():
    probes = []

    def probe(dtype, threads):
        probes.append((dtype, threads))
        return 100.0

    same = lambda: np.arange(6.0).reshape(2, 3) * 2  # noqa: E731
    flops = run_case(_case(same), rounds=3, min_time=0.0, peak_probe=probe)
    assert probes == [("float32", 1)] * 3 and flops["round_peak_gflops"] == [100.0] * 3
    steps = run_case(_case(same, unit="ms/step"), rounds=3, min_time=0.0, peak_probe=probe)
    assert len(probes) == 3 and "round_peak_gflops" not in steps


def test_peak_fraction_pairs_each_round_with_its_own_probe():
    """The host runs at half speed in round 2: engine's rate and the probe both halve, and the
    fraction stays 0.9, where the peak read once at the start (200) would make it 0.45."""
    row = {"dtype": "float32", "threads": 1, "rate": {"engine": 90.0},
           "seconds": {"engine": 2.0}, "round_seconds": {"engine": [1.0, 2.0, 2.0]},
           "round_peak_gflops": [200.0, 100.0, 100.0]}
    assert peak_fraction(row, {("float32", 1): 200.0}) == pytest.approx(0.9)
    del row["round_peak_gflops"]  # no probes in the rounds: the median rate over the one peak
    assert peak_fraction(row, {("float32", 1): 200.0}) == pytest.approx(0.45)
    assert peak_fraction(row, {}) is None


def test_gemm_suite_implementations_agree():
    case = next(gemm.cases(quick=True, thread_counts=[1]))
    assert run_case(case, rounds=1, min_time=0.0)["mismatch"] == []


@pytest.mark.parametrize("kind", ["mlp", "gpt"])
def test_train_step_losses_agree_between_kernel_sets(kind):
    vocab = 20
    first = [train._engine_step(kind, 4, kernel_set, vocab)() for kernel_set in ("numpy", "native")]
    np.testing.assert_allclose(first[0], first[1], rtol=1e-5)
    assert np.isfinite(first[0])


def test_peak_memory_sees_the_reference_attention_materialize_its_scores():
    from engine.benchmarks import memory

    if not memory.supported():
        pytest.skip("needs Linux /proc/self/clear_refs")
    # engine's extra memory is its 2 MiB output and ~130 KiB of block buffers; the
    # reference's is dominated by its float32 score blocks. The kernel counts resident pages
    # lazily (up to 64 pages per thread), hence the slack.
    shape = (1, 4, 2048, 64, False, False)
    output = 4 * 2048 * 64 * 4
    numpy_bytes = memory.peak_extra_bytes("attention", shape, "numpy", 1)
    engine_bytes = memory.peak_extra_bytes("attention", shape, "engine", 1)
    assert 0.75 * output <= engine_bytes <= 1.5 * output
    assert numpy_bytes > 4 * output
