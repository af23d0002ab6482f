"""The ``fastbp`` command line: ``python -m fastbp`` or the ``fastbp`` script.

Subcommands:
  train      the book's chapter-5 experiment (TwoLayerNet on MNIST) through
             fastbp.Trainer, or a MultiLayerNet; prints the test accuracy
  gradcheck  the book's gradient check: backprop against numerical gradients
  info       fastbp.show_config(): compiled core, BLAS, OpenMP, SIMD, threads
  bench      the benchmark of fastbp.bench (book / reference vs fastbp)

``main(argv=None)`` parses ``argv`` (default: sys.argv[1:]) and returns the
exit code: 0 success, 1 runtime failure (failed gradient check, unreadable
data), 2 bad arguments (argparse usage errors, a missing optional dependency).

Each subcommand NAME is one section below: ``_NAME_parser(subparsers)`` adds
its parser (options, help) and sets ``handler=cmd_NAME``; ``cmd_NAME(parser,
args)`` runs it and returns the exit code (raise ``CommandError`` for a
one-line runtime error).  ``SUBCOMMANDS`` lists the parser functions in
``--help`` order: a new subcommand is a new section and one entry there.
"""
import argparse
import os
import sys
import time

from ._argtypes import non_negative_int, positive_float, positive_int

DEFAULT_EPOCHS = 40          # 4,000 steps on the 10k subset: test accuracy ~0.91
DEFAULT_HIDDEN = 50
DEFAULT_BATCH = 100
DEFAULT_SGD_LR = 0.1         # the book's ch05/train_neuralnet.py
GRADCHECK_IMAGES = 3         # the book's ch05/gradient_check.py: x_train[:3]
GRADCHECK_TOL = 1e-9         # largest accepted mean |backprop - numerical|
OPTIMIZER_NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
PLOT_HINT = "--plot needs matplotlib: pip install 'fastbp[plot]'"


class CommandError(Exception):
    """A runtime failure reported as one ``fastbp: error: ...`` line."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------
# argument types
# ---------------------------------------------------------------------------

def hidden_sizes(text):
    """'50' -> [50]; '100,50' -> [100, 50] (a list: MultiLayerNet)."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(not p for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or a comma-separated list like 100,50, got {text!r}")
    try:
        return [positive_int(p) for p in parts]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or a comma-separated list like 100,50, "
            f"got {text!r}") from None


# ---------------------------------------------------------------------------
# shared options and helpers
# ---------------------------------------------------------------------------

def _add_data_options(p):
    p.add_argument("--data", choices=("mini", "mnist"), default=None,
                   help="mini: the 10,000/2,000-image MNIST subset shipped with fastbp "
                        "(default); mnist: the full 60,000/10,000 set via "
                        "fastbp.datasets.load_mnist")
    p.add_argument("--data-dir", metavar="DIR", default=None,
                   help="directory of the full MNIST files (implies --data mnist; default "
                        "$FASTBP_DATA or ~/.fastbp/mnist)")
    p.add_argument("--no-download", action="store_true",
                   help="with --data mnist: fail instead of downloading missing files")


def _add_backend_option(p):
    p.add_argument("--backend", choices=("fast", "reference"), default="fast",
                   help="fast: fastbp.networks/fastbp.optimizers (compiled); reference: "
                        "fastbp.reference (plain NumPy)  [fast]")


def _check_data_args(parser, args):
    if args.data_dir is not None and args.data == "mini":
        parser.error("--data-dir is for the full set: use it with --data mnist")
    if args.data is None:
        args.data = "mnist" if args.data_dir is not None else "mini"
    if args.no_download and args.data != "mnist":
        parser.error("--no-download is for the full set: use it with --data mnist")


def _load_data(args):
    """((x_train, t_train), (x_test, t_test)) and a description; CommandError on failure."""
    from . import datasets
    try:
        if args.data == "mini":
            data = datasets.load_mnist_mini()
            what = "embedded MNIST subset"
        else:
            data = datasets.load_mnist(path=args.data_dir, download=not args.no_download)
            where = args.data_dir if args.data_dir is not None else datasets.mnist_dir_default()
            what = f"MNIST from {where}"
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot load MNIST: {exc}") from None
    return data, what


def _modules(backend):
    """(networks module, get_optimizer) for a backend name."""
    if backend == "reference":
        from .reference import networks, optimizers
    else:
        from . import networks, optimizers
    return networks, optimizers.get_optimizer


def _check_output_path(option, path):
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CommandError(f"{option} {path}: directory {parent} does not exist", code=2)
    if os.path.isdir(path):
        raise CommandError(f"{option} {path}: is a directory", code=2)


# ---------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------

def _train_parser(subparsers):
    p = subparsers.add_parser(
        "train", help="train a network on MNIST (the book's chapter-5 experiment)",
        description="Train on MNIST with fastbp.Trainer. Without options: the book's "
                    f"experiment, TwoLayerNet 784-50-10, batch {DEFAULT_BATCH}, SGD lr "
                    f"{DEFAULT_SGD_LR}, float64, {DEFAULT_EPOCHS} epochs on the embedded "
                    "10k-image subset (test accuracy ~0.91). A list of hidden sizes or "
                    "--activation sigmoid selects MultiLayerNet (He/Xavier init). The last "
                    "line is 'test accuracy: A (N steps, T s, S steps/s)'.")
    _add_data_options(p)
    p.add_argument("--hidden", type=hidden_sizes, default=None, metavar="N[,N...]",
                   help=f"hidden layer width, or a comma-separated list of widths "
                        f"(MultiLayerNet)  [{DEFAULT_HIDDEN}]")
    p.add_argument("--activation", choices=("relu", "sigmoid"), default="relu",
                   help="hidden activation; sigmoid selects MultiLayerNet  [relu]")
    p.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default="sgd",
                   help="[sgd]")
    p.add_argument("--lr", type=positive_float, default=None,
                   help=f"learning rate  [{DEFAULT_SGD_LR} for sgd, else the optimizer's "
                        "default as in the book: 0.01, adam 0.001]")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, default=None,
                        help=f"epochs of N_train // batch-size steps  [{DEFAULT_EPOCHS}]")
    length.add_argument("--iters", type=positive_int, default=None,
                        help="total number of steps (instead of --epochs)")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH,
                   help=f"[{DEFAULT_BATCH}]")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="parameter dtype  [float64]")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the weights and of the batch sampler  [0]")
    _add_backend_option(p)
    p.add_argument("--save", metavar="PARAMS.npz", default=None,
                   help="write the trained parameters with net.save")
    p.add_argument("--plot", metavar="CURVE.png", default=None,
                   help="plot the loss and accuracy curves (needs matplotlib)")
    p.add_argument("--threads", type=non_negative_int, default=1,
                   help="BLAS and fastbp kernel threads (threadpoolctl); 0 keeps the "
                        "library defaults. The book's nets are too small for threads to "
                        "pay: on 2 cores one thread trained 784-50-10 10%% faster idle "
                        "and 2x faster with the other core busy  [1]")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="print only the final line")
    p.set_defaults(handler=cmd_train, command_parser=p)


def cmd_train(parser, args):
    import numpy as np

    _check_data_args(parser, args)
    hidden = args.hidden if args.hidden is not None else [DEFAULT_HIDDEN]
    multi = len(hidden) != 1 or args.activation != "relu"
    if args.plot is not None:
        try:
            import matplotlib.figure  # noqa: F401
        except ImportError:
            raise CommandError(PLOT_HINT, code=2) from None
        _check_output_path("--plot", args.plot)
    if args.save is not None:
        _check_output_path("--save", args.save)

    ((x_train, t_train), (x_test, t_test)), data_what = _load_data(args)

    networks, get_optimizer = _modules(args.backend)
    dtype = np.dtype(args.dtype)
    n_in, n_out = int(np.prod(x_train.shape[1:])), 10
    if multi:
        net = networks.MultiLayerNet(n_in, hidden, n_out, activation=args.activation,
                                     weight_init_std=args.activation, dtype=dtype,
                                     seed=args.seed)
    else:
        net = networks.TwoLayerNet(n_in, hidden[0], n_out, dtype=dtype, seed=args.seed)
    lr = args.lr
    if lr is None and args.optimizer == "sgd":
        lr = DEFAULT_SGD_LR
    optimizer = get_optimizer(args.optimizer, **({} if lr is None else {"lr": lr}))

    from .trainer import Trainer
    epochs = args.epochs if args.epochs is not None else DEFAULT_EPOCHS
    trainer = Trainer(net, x_train, t_train, x_test, t_test, epochs=epochs,
                      mini_batch_size=args.batch_size, optimizer=optimizer,
                      verbose=not args.quiet, seed=args.seed, max_iter=args.iters)
    sizes = "-".join(str(s) for s in [n_in, *hidden, n_out])
    title = (f"{type(net).__name__} {sizes} ({args.activation}), {optimizer!r}, "
             f"batch {args.batch_size}, {dtype.name}, {args.backend} backend")
    if not args.quiet:
        length = (f"{args.iters} steps" if args.iters is not None else
                  f"{epochs} epochs x {trainer.iter_per_epoch} steps = {trainer.max_iter} steps")
        print(title)
        print(f"data: {data_what}, {len(x_train)} train / {len(x_test)} test images; {length}",
              flush=True)
    from ._runtime import thread_limits
    with thread_limits(args.threads):          # 0: the libraries' defaults
        trainer.train()

    if args.save is not None:
        try:
            written = net.save(args.save)
        except OSError as exc:
            raise CommandError(f"--save {args.save}: {exc}") from None
        if not args.quiet:
            print(f"saved parameters to {written}")
    if args.plot is not None:
        try:
            _plot_curves(trainer, args.plot, title)
        except (OSError, ValueError) as exc:
            raise CommandError(f"--plot {args.plot}: {exc}") from None
        if not args.quiet:
            print(f"saved curves to {args.plot}")
    steps = trainer.n_steps
    rate = steps / max(trainer.elapsed, 1e-9)
    print(f"test accuracy: {trainer.test_acc:.4f} ({steps} steps, {trainer.elapsed:.2f} s, "
          f"{rate:.1f} steps/s)")
    return 0


def _plot_curves(trainer, path, title):
    from matplotlib.figure import Figure   # no pyplot: no GUI backend, no global state

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    losses = trainer.train_loss_list
    ax_loss.plot(range(1, len(losses) + 1), losses, linewidth=0.8)
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss (mini-batch)")
    ax_loss.set_title("loss")
    epochs = range(1, len(trainer.test_acc_list) + 1)
    if len(epochs):
        ax_acc.plot(epochs, trainer.train_acc_list, marker="o", markersize=3, label="train")
        ax_acc.plot(epochs, trainer.test_acc_list, marker="s", markersize=3,
                    linestyle="--", label="test")
        ax_acc.legend(loc="lower right")
    else:
        ax_acc.text(0.5, 0.5, "no complete epoch", ha="center", va="center",
                    transform=ax_acc.transAxes)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.0)
    ax_acc.set_title(f"accuracy (final test {trainer.test_acc:.4f})")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100)


# ---------------------------------------------------------------------------
# gradcheck
# ---------------------------------------------------------------------------

def _gradcheck_parser(subparsers):
    p = subparsers.add_parser(
        "gradcheck", help="compare backprop with numerical gradients (the book's 5.7.3)",
        description="The book's gradient check: TwoLayerNet 784-H-10 (float64) on the first "
                    f"{GRADCHECK_IMAGES} training images; gradient() against "
                    "numerical_gradient() for every entry. Exit 1 if a mean |difference| "
                    f"exceeds {GRADCHECK_TOL:g}.")
    _add_data_options(p)
    p.add_argument("--hidden", type=positive_int, default=DEFAULT_HIDDEN,
                   help=f"hidden width  [{DEFAULT_HIDDEN}]")
    p.add_argument("--seed", type=non_negative_int, default=0, help="weight seed  [0]")
    p.add_argument("--max-entries", type=positive_int, default=None, metavar="N",
                   help="check a random sample of N entries per parameter with "
                        "fastbp.gradient.gradient_check instead of all of them")
    _add_backend_option(p)
    p.set_defaults(handler=cmd_gradcheck, command_parser=p)


def cmd_gradcheck(parser, args):
    import numpy as np

    from .gradient import compare_gradients, gradient_check

    _check_data_args(parser, args)
    ((x_train, t_train), _), _ = _load_data(args)
    x = np.asarray(x_train[:GRADCHECK_IMAGES], dtype=np.float64)
    t = t_train[:GRADCHECK_IMAGES]
    networks, _ = _modules(args.backend)
    net = networks.TwoLayerNet(x.shape[1], args.hidden, 10, dtype=np.float64, seed=args.seed)
    start = time.perf_counter()
    if args.max_entries is None:
        # the book: every entry of every parameter, two forward passes each
        report = compare_gradients(net.gradient(x, t), net.numerical_gradient(x, t))
    else:
        report = gradient_check(net, x, t, max_entries=args.max_entries, seed=args.seed)
    elapsed = time.perf_counter() - start

    print(f"{type(net).__name__} {x.shape[1]}-{args.hidden}-10 float64 ({args.backend} "
          f"backend), {len(x)} images: {report.scope}, {elapsed:.1f} s")
    print(report.format(GRADCHECK_TOL))
    return 0 if report.passed(GRADCHECK_TOL) else 1


# ---------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------

def _info_parser(subparsers):
    p = subparsers.add_parser("info", help="show the configuration (fastbp.show_config())",
                              description="Print version, compiled core, BLAS, OpenMP, SIMD "
                                          "level and threads.")
    p.set_defaults(handler=cmd_info, command_parser=p)


def cmd_info(parser, args):
    from . import show_config
    show_config()
    return 0


# ---------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------

def _bench_parser(subparsers):
    from . import bench
    p = subparsers.add_parser("bench", help="time book / reference code against fastbp",
                              description=bench.DESCRIPTION)
    bench.add_arguments(p)
    p.set_defaults(handler=cmd_bench, command_parser=p)


def cmd_bench(parser, args):
    from . import bench
    return bench.run_args(args)


# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------

#: the subcommands, in --help order: each adds its parser (handler=cmd_<name>)
SUBCOMMANDS = (_train_parser, _gradcheck_parser, _info_parser, _bench_parser)


def build_parser():
    """The ``fastbp`` parser: global options, then one subparser per entry of SUBCOMMANDS."""
    parser = argparse.ArgumentParser(
        prog="fastbp",
        description="Backprop layers of 'Deep Learning from Scratch' (ch. 5), compiled.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"fastbp {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    return parser


def main(argv=None):
    """Run the command line on ``argv`` (default sys.argv[1:]); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:          # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return args.handler(args.command_parser, args)
    except SystemExit as exc:          # parser.error() inside a command
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except CommandError as exc:
        print(f"fastbp: error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("fastbp: interrupted", file=sys.stderr)
        return 130


def _one_line(message):
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
