"""Command line: python -m engine info | bench | train."""
import argparse


def _info(args):
    from engine.info import report

    print(report())
    return 0


def _bench(args):
    if args.device == "cuda":
        import engine

        why = engine.cuda.unavailable_reason()
        if why is not None:
            print(f"engine bench --device cuda: CUDA is not available: {why}")
            return 1
    try:
        from engine.benchmarks.main import run
    except ImportError as e:
        from engine.info import source_tree_hint

        print(f"the benchmark suites are not installed with this copy of engine ({e})")
        print(source_tree_hint() or "reinstall engine with: pip install .")
        return 1
    run(args.suite, quick=args.quick, threads=args.threads, json_path=args.json, plot_path=args.plot,
        device=args.device)
    return 0


def _train(args):
    from engine.train import fill_defaults, run

    run(fill_defaults(args))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m engine", description="engine: a small deep-learning tensor engine")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="version, native modules, threads, CPU features, CUDA, kernels")
    info.set_defaults(run=_info)

    bench = sub.add_parser("bench", help="time the kernels against NumPy (and PyTorch if installed)")
    bench.add_argument("--suite", default="all", choices=["gemm", "conv", "attention", "train", "all"])
    bench.add_argument("--quick", action="store_true", help="a short run: fewer cases and repeats")
    bench.add_argument("--threads", type=int, default=None, help="thread count (default: 1 and all cores)")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                       help="cpu: the native kernels vs NumPy and PyTorch; cuda: the GPU kernels vs "
                            "cuBLAS/cuDNN (CuPy, PyTorch) and NumPy (gemm, conv), attention vs torch SDPA and "
                            "CuPy, GPT training tokens/s vs PyTorch eager (train)")
    bench.add_argument("--json", metavar="PATH", help="write the results as JSON")
    bench.add_argument("--plot", metavar="PATH", help="draw a bar chart (PNG) with matplotlib")
    bench.set_defaults(run=_bench)

    from engine.train import add_arguments

    train = sub.add_parser("train", help="train the MNIST MLP or CNN, or the character GPT")
    add_arguments(train)
    train.set_defaults(run=_train)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)
