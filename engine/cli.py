"""Command line: python -m engine info | bench | train."""
import argparse


def _info(args):
    from engine.info import report

    print(report())
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m engine", description="engine: a small deep-learning tensor engine")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="version, native modules, threads, CPU features, CUDA, kernels")
    info.set_defaults(run=_info)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)
