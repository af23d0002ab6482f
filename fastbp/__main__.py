"""The ``fastbp`` command line: ``python -m fastbp`` or the ``fastbp`` script.

Subcommands:
  train      the book's chapter-5 experiment (TwoLayerNet on MNIST) through
             fastbp.Trainer, or a MultiLayerNet, or a convnet of chapters 7-8
             (--net); prints the test accuracy
  gradcheck  the book's gradient check: backprop against numerical gradients
  evaluate   the test accuracy of a convnet's saved parameters (the book's
             ch08/misclassified_mnist.py)
  info       fastbp.show_config(): compiled core, BLAS, OpenMP, SIMD, threads
  bench      the benchmark of fastbp.bench (book / reference vs fastbp)
  tune       random search over lr and weight decay (the book's ch. 6), in
             parallel on local processes or a Dask cluster (fastbp.tune)

``main(argv=None)`` parses ``argv`` (default: sys.argv[1:]) and returns the
exit code: 0 success, 1 runtime failure (failed gradient check, unreadable
data), 2 bad arguments (argparse usage errors, a missing optional dependency,
an output path that can't be written or a plot format matplotlib doesn't
write, sizes that don't fit in memory, thread counts past 4 x the CPUs).
Every error is one ``fastbp: error: ...`` line.  A command checks all of
its arguments -- every path it will write included -- before any work, so
a mistake never costs a finished run.

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

from . import _cli_checks, _files
from ._argtypes import (fraction_below_one, non_negative_float, non_negative_int,
                        positive_float, positive_int, thread_count, worker_count)

DEFAULT_EPOCHS = 40          # 4,000 steps on the 10k subset: test accuracy ~0.91
DEFAULT_HIDDEN = 50
DEFAULT_BATCH = 100
DEFAULT_SGD_LR = 0.1         # the book's ch05/train_neuralnet.py
GRADCHECK_IMAGES = 3         # the book's ch05/gradient_check.py: x_train[:3]
GRADCHECK_TOL = 1e-9         # largest accepted mean |backprop - numerical|
GRADCHECK_BN_IMAGES = 10     # --batchnorm: the book's check uses one image, whose batch
                             # statistics put beta2 on ReLU's kink (it prints 0.05 there)
GRADCHECK_BN_TOL = 1e-8      # batch statistics curve the loss more: a larger h**2 error
OPTIMIZER_NAMES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
PLOT_HINT = "--plot needs matplotlib: pip install 'fastbp[plot]'"
MNIST_PIXELS = 784           # the input width of every network the commands build
GRADCHECK_CONV_IMAGES = 3    # --net simple-convnet: random images (the book's script: 1)
# --net simple-convnet: weights of std 0.3 and steps of h = 1e-5 keep the
# outputs of ReLU and max pooling farther than a step from their kinks (the
# book's std 0.01 and h = 1e-4 put some within it: its own differences reach 1e-4)
GRADCHECK_CONV_STD = 0.3
GRADCHECK_CONV_H = 1e-5
# chapters 7-8: the convnets, trained as the book's ch07/train_convnet.py and
# ch08/train_deepnet.py (Adam lr 0.001, batch 100, accuracy on 1,000 samples an epoch)
CONVNETS = {"simple-convnet": "SimpleConvNet", "deep-convnet": "DeepConvNet"}
CONVNET_EPOCHS = {"simple-convnet": 20, "deep-convnet": 5}     # simple: the book's 20
CONVNET_LR = 0.001
CONVNET_EVAL_SAMPLES = 1000


SIGPIPE_STATUS = 141         # 128 + SIGPIPE: what a shell reports for `yes | head -1`


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


def _check_output_path(option, path, suffix=None):
    """The path ``option`` will write (``suffix`` appended if missing), once
    a file can be created there: a usage error (exit 2) otherwise, before
    any work."""
    try:
        return _cli_checks.check_output_path(path, suffix)
    except (OSError, ValueError) as exc:
        message = str(exc)
        prefix = f"{os.fspath(path)}: "
        raise CommandError(f"{option} {path}: {message[len(prefix):]}"
                           if message.startswith(prefix) else f"{option} {path}: {message}",
                           code=2) from None


def _check_plot_option(path):
    """--plot PATH: matplotlib there, a format it writes, a writable path."""
    try:
        _files.check_figure_format(path, PLOT_HINT)
    except ImportError:
        raise CommandError(PLOT_HINT, code=2) from None
    except ValueError as exc:
        raise CommandError(f"--plot {exc}", code=2) from None
    _check_output_path("--plot", path)


def _check_memory(what, sizes, batch, dtype, optimizer="sgd", copies=1):
    """A usage error (exit 2) naming ``what`` when the run can't fit in memory."""
    import numpy as np
    try:
        _cli_checks.check_memory(what, _cli_checks.mlp_run_bytes(
            sizes, batch, np.dtype(dtype).itemsize, optimizer), copies)
    except ValueError as exc:
        raise CommandError(str(exc), code=2) from None


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
                    "--activation sigmoid selects MultiLayerNet (He/Xavier init); "
                    "--batchnorm, --dropout or --weight-decay select the book's chapter-6 "
                    "MultiLayerNetExtend. The last line is 'test accuracy: A (N steps, T s, "
                    "S steps/s)'.")
    _add_data_options(p)
    p.add_argument("--net", choices=("mlp",) + tuple(CONVNETS), default="mlp",
                   help="mlp: TwoLayerNet or MultiLayerNet (chapter 5); simple-convnet, "
                        "deep-convnet: the book's SimpleConvNet and DeepConvNet (chapters "
                        "7-8), trained as its ch07/train_convnet.py and ch08/train_deepnet.py: "
                        f"Adam lr {CONVNET_LR}, accuracy on {CONVNET_EVAL_SAMPLES} samples an "
                        f"epoch, {CONVNET_EPOCHS['simple-convnet']} and "
                        f"{CONVNET_EPOCHS['deep-convnet']} epochs by default  [mlp]")
    p.add_argument("--hidden", type=hidden_sizes, default=None, metavar="N[,N...]",
                   help=f"hidden layer width, or a comma-separated list of widths "
                        f"(MultiLayerNet); a convnet's one hidden affine layer  "
                        f"[{DEFAULT_HIDDEN}; convnets: the book's 100 and 50]")
    p.add_argument("--activation", choices=("relu", "sigmoid"), default="relu",
                   help="hidden activation; sigmoid selects MultiLayerNet  [relu]")
    p.add_argument("--batchnorm", action="store_true",
                   help="batch normalisation before every hidden activation "
                        "(MultiLayerNetExtend)")
    p.add_argument("--dropout", type=fraction_below_one, default=None, metavar="RATIO",
                   help="dropout after every hidden activation, dropping this fraction of "
                        "the units, in [0, 1) (MultiLayerNetExtend; its masks come from "
                        "--seed)")
    p.add_argument("--weight-decay", type=non_negative_float, default=None, metavar="LAMBDA",
                   help="L2 weight decay: 0.5 * LAMBDA * sum(W**2) added to the loss "
                        "(MultiLayerNetExtend)  [0]")
    p.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default=None,
                   help="[sgd; convnets: adam]")
    p.add_argument("--lr", type=positive_float, default=None,
                   help=f"learning rate  [{DEFAULT_SGD_LR} for sgd, else the optimizer's "
                        "default as in the book: 0.01, adam 0.001]")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, default=None,
                        help=f"epochs of N_train // batch-size steps  [{DEFAULT_EPOCHS}; "
                             f"convnets: {CONVNET_EPOCHS['simple-convnet']}, "
                             f"{CONVNET_EPOCHS['deep-convnet']}]")
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
                   help="write the trained parameters with net.save (convnets: "
                        "net.save_params, the book's pickle, e.g. PARAMS.pkl)")
    p.add_argument("--plot", metavar="CURVE.png", default=None,
                   help="plot the loss and accuracy curves (needs matplotlib)")
    p.add_argument("--threads", type=thread_count, default=1,
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
    convnet = args.net in CONVNETS
    if convnet:
        _check_convnet_train_args(parser, args)
    elif args.optimizer is None:
        args.optimizer = "sgd"
    hidden = args.hidden if args.hidden is not None else [DEFAULT_HIDDEN]
    multi = len(hidden) != 1 or args.activation != "relu"
    extend = args.batchnorm or args.dropout is not None or args.weight_decay is not None
    if args.plot is not None:
        _check_plot_option(args.plot)
    if args.save is not None:      # convnets: the book's pickle, written where named
        _check_output_path("--save", args.save, None if convnet else ".npz")
    if not convnet:
        _check_memory("--batch-size and --hidden", [MNIST_PIXELS, *hidden, 10],
                      args.batch_size, args.dtype, args.optimizer)

    ((x_train, t_train), (x_test, t_test)), data_what = _load_data(args)

    networks, get_optimizer = _modules(args.backend)
    dtype = np.dtype(args.dtype)
    n_in, n_out = int(np.prod(x_train.shape[1:])), 10
    evaluate_samples = None
    if convnet:
        net, x_train, x_test = _convnet_for_training(args, dtype, x_train, x_test)
        evaluate_samples = CONVNET_EVAL_SAMPLES
    elif extend:
        net = _extend_class(args.backend)(
            n_in, hidden, n_out, activation=args.activation, weight_init_std=args.activation,
            weight_decay_lambda=args.weight_decay or 0, use_dropout=args.dropout is not None,
            dropout_ration=0.5 if args.dropout is None else args.dropout,
            use_batchnorm=args.batchnorm, dtype=dtype, seed=args.seed)
    elif multi:
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
                      evaluate_sample_num_per_epoch=evaluate_samples,
                      verbose=not args.quiet, seed=args.seed, max_iter=args.iters)
    sizes = "-".join(str(s) for s in [n_in, *hidden, n_out])
    title = (f"{type(net).__name__} {sizes} ({', '.join(_layer_options(args))}), "
             f"{optimizer!r}, batch {args.batch_size}, {dtype.name}, {args.backend} backend")
    if convnet:
        title = (f"{net!r}, {optimizer!r}, batch {args.batch_size}, {args.backend} backend")
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
            if convnet:
                net.save_params(args.save)
                written = args.save
            else:
                written = net.save(args.save)
        except OSError as exc:
            raise CommandError(f"--save {args.save}: {exc}") from None
        if not args.quiet:
            print(f"saved parameters to {written}")
    if args.plot is not None:
        try:
            trainer.plot(args.plot, title=title)
        except (OSError, ValueError) as exc:
            raise CommandError(f"--plot {args.plot}: {exc}") from None
        if not args.quiet:
            print(f"saved curves to {args.plot}")
    steps = trainer.n_steps
    rate = steps / max(trainer.elapsed, 1e-9)
    print(f"test accuracy: {trainer.test_acc:.4f} ({steps} steps, {trainer.elapsed:.2f} s, "
          f"{rate:.1f} steps/s)")
    return 0


def _check_convnet_train_args(parser, args):
    """--net simple-convnet/deep-convnet: the options that apply, the book's defaults."""
    if args.activation != "relu":
        parser.error("--activation is for --net mlp: the convnets use ReLU")
    if args.batchnorm or args.dropout is not None or args.weight_decay is not None:
        parser.error("--batchnorm, --dropout and --weight-decay are for --net mlp "
                     "(MultiLayerNetExtend)")
    if args.hidden is not None and len(args.hidden) != 1:
        parser.error(f"--hidden: a convnet has one hidden affine layer, got "
                     f"{','.join(map(str, args.hidden))}")
    if args.optimizer is None:
        args.optimizer = "adam"
        if args.lr is None:
            args.lr = CONVNET_LR
    if args.epochs is None and args.iters is None:
        args.epochs = CONVNET_EPOCHS[args.net]


def _convnet_for_training(args, dtype, x_train, x_test):
    """(net, x_train, x_test): the convnet of --net and the images as (N, 1, 28, 28)."""
    networks = _convnet_module(args.backend)
    kwargs = {} if args.hidden is None else {"hidden_size": args.hidden[0]}
    net = getattr(networks, CONVNETS[args.net])(dtype=dtype, seed=args.seed, **kwargs)
    images = lambda x: x.reshape((len(x),) + net.input_dim)  # noqa: E731
    return net, images(x_train), images(x_test)


def _convnet_module(backend):
    """The module with SimpleConvNet and DeepConvNet for a backend name."""
    if backend == "reference":
        from .reference import convnets
        return convnets
    from . import networks
    return networks


def _extend_class(backend):
    """MultiLayerNetExtend of the backend's networks."""
    if backend == "reference":
        from .reference.multi_layer_net_extend import MultiLayerNetExtend
    else:
        from .networks import MultiLayerNetExtend
    return MultiLayerNetExtend


def _layer_options(args):
    """The hidden layers' description for the title: activation, then the
    chapter-6 options given."""
    options = [args.activation]
    if args.batchnorm:
        options.append("batchnorm")
    if args.dropout is not None:
        options.append(f"dropout {args.dropout:g}")
    if args.weight_decay is not None:
        options.append(f"weight decay {args.weight_decay:g}")
    return options


# ---------------------------------------------------------------------------
# gradcheck
# ---------------------------------------------------------------------------

def _gradcheck_parser(subparsers):
    p = subparsers.add_parser(
        "gradcheck", help="compare backprop with numerical gradients (the book's 5.7.3)",
        description="The book's gradient check: TwoLayerNet 784-H-10 (float64) on the first "
                    f"{GRADCHECK_IMAGES} training images; gradient() against "
                    "numerical_gradient() for every entry. With --batchnorm, the book's "
                    "ch06/batch_norm_gradient_check.py: MultiLayerNetExtend 784-H-H-10 with "
                    f"batch normalisation on the first {GRADCHECK_BN_IMAGES} images, gamma "
                    "and beta included, in training mode. Exit 1 if a mean |difference| "
                    f"exceeds {GRADCHECK_TOL:g} ({GRADCHECK_BN_TOL:g} with --batchnorm).")
    _add_data_options(p)
    p.add_argument("--net", choices=("mlp", "simple-convnet"), default="mlp",
                   help="mlp: the book's TwoLayerNet check; simple-convnet: its "
                        "ch07/gradient_check.py, SimpleConvNet with 10 filters 3 x 3, hidden "
                        f"10, on {GRADCHECK_CONV_IMAGES} random 10 x 10 images, with weights of "
                        f"std {GRADCHECK_CONV_STD} and differences of h = {GRADCHECK_CONV_H:g} "
                        "(the book's 0.01 and 1e-4 put ReLU and max pooling within a step of "
                        "their kinks)  [mlp]")
    p.add_argument("--hidden", type=positive_int, default=None,
                   help=f"hidden width  [{DEFAULT_HIDDEN}; simple-convnet: 10]")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="weight seed (and the convnet's images)  [0]")
    p.add_argument("--batchnorm", action="store_true",
                   help="check MultiLayerNetExtend 784-H-H-10 with batch normalisation "
                        f"(the book's ch06 check) on {GRADCHECK_BN_IMAGES} images")
    p.add_argument("--max-entries", type=positive_int, default=None, metavar="N",
                   help="check a random sample of N entries per parameter with "
                        "fastbp.gradient.gradient_check instead of all of them")
    _add_backend_option(p)
    p.set_defaults(handler=cmd_gradcheck, command_parser=p)


def cmd_gradcheck(parser, args):
    import numpy as np

    from .gradient import compare_gradients, gradient_check

    _check_data_args(parser, args)
    if args.batchnorm and args.net != "mlp":
        parser.error("--batchnorm is for --net mlp (the book's ch06 check)")
    tol = GRADCHECK_BN_TOL if args.batchnorm else GRADCHECK_TOL
    if args.net == "simple-convnet":
        net, x, t, what = _gradcheck_convnet(args)
    else:
        hidden_width = DEFAULT_HIDDEN if args.hidden is None else args.hidden
        _check_memory("--hidden", [MNIST_PIXELS, hidden_width, 10], GRADCHECK_IMAGES,
                      "float64")
        ((x_train, t_train), _), _ = _load_data(args)
        images = GRADCHECK_BN_IMAGES if args.batchnorm else GRADCHECK_IMAGES
        x = np.asarray(x_train[:images], dtype=np.float64)
        t = t_train[:images]
        networks, _ = _modules(args.backend)
        if args.batchnorm:
            hidden = [hidden_width, hidden_width]
            net = _extend_class(args.backend)(x.shape[1], hidden, 10, use_batchnorm=True,
                                              dtype=np.float64, seed=args.seed)
        else:
            hidden = [hidden_width]
            net = networks.TwoLayerNet(x.shape[1], hidden_width, 10, dtype=np.float64,
                                       seed=args.seed)
        sizes = "-".join(str(s) for s in [x.shape[1], *hidden, 10])
        what = f"{type(net).__name__} {sizes}{' with batch norm' if args.batchnorm else ''}"
    start = time.perf_counter()
    if args.net == "simple-convnet":
        entries = args.max_entries or max(p.size for p in net.params.values())
        report = gradient_check(net, x, t, max_entries=entries, seed=args.seed,
                                h=GRADCHECK_CONV_H)
    elif args.max_entries is None:
        # the book: every entry of every parameter, two forward passes each
        report = compare_gradients(net.gradient(x, t), net.numerical_gradient(x, t))
    else:
        report = gradient_check(net, x, t, max_entries=args.max_entries, seed=args.seed)
    elapsed = time.perf_counter() - start

    print(f"{what} float64 ({args.backend} backend), {len(x)} images: {report.scope}, "
          f"{elapsed:.1f} s")
    print(report.format(tol))
    return 0 if report.passed(tol) else 1


def _gradcheck_convnet(args):
    """(net, x, t, description): the book's ch07/gradient_check.py network on
    GRADCHECK_CONV_IMAGES random images with labels 0, 1, 2, ... as (N, 1)."""
    import numpy as np

    networks = _convnet_module(args.backend)
    net = networks.SimpleConvNet(input_dim=(1, 10, 10),
                                 conv_param={"filter_num": 10, "filter_size": 3, "pad": 0,
                                             "stride": 1},
                                 hidden_size=10 if args.hidden is None else args.hidden,
                                 output_size=10, weight_init_std=GRADCHECK_CONV_STD,
                                 dtype=np.float64,
                                 seed=args.seed)
    x = np.random.default_rng(args.seed).random((GRADCHECK_CONV_IMAGES, 1, 10, 10))
    t = (np.arange(GRADCHECK_CONV_IMAGES) % 10).reshape(-1, 1)
    return net, x, t, f"SimpleConvNet 1x10x10-conv10x3x3-{net.hidden_size}-10"


# ---------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------

EVALUATE_SHOWN = 20          # misclassified images listed: the book's 4 x 5 grid


def _evaluate_parser(subparsers):
    p = subparsers.add_parser(
        "evaluate", help="test accuracy of a convnet's saved parameters (the book's 8.2)",
        description="The book's ch08/misclassified_mnist.py: load a SimpleConvNet's or "
                    "DeepConvNet's parameters (the book's ch07/params.pkl or "
                    "ch08/deep_convnet_params.pkl, or fastbp train --net ... --save), predict "
                    "the MNIST test images in batches and print the misclassified ones and "
                    "the accuracy. The file is read through fastbp's restricted unpickler "
                    "(a dict of arrays, nothing executed). The last line is 'test accuracy: "
                    "A (N images, T s, R images/s)'.")
    p.add_argument("params", metavar="PARAMS.pkl",
                   help="the parameters, a pickled dict {'W1': array, ...} (save_params)")
    p.add_argument("--net", choices=("auto",) + tuple(CONVNETS), default="auto",
                   help="the network they are for; auto: from the file's names (W1-W3: "
                        "simple-convnet, W1-W8: deep-convnet)  [auto]")
    _add_data_options(p)
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH,
                   help=f"images predicted at a time  [{DEFAULT_BATCH}]")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="the network's dtype (the parameters are cast)  [float64]")
    _add_backend_option(p)
    p.add_argument("--threads", type=non_negative_int, default=1,
                   help="BLAS and fastbp kernel threads; 0 keeps the library defaults  [1]")
    p.add_argument("--show", type=non_negative_int, default=EVALUATE_SHOWN, metavar="N",
                   help=f"list the first N misclassified images as {{index: (label, "
                        f"predicted)}}, as the book  [{EVALUATE_SHOWN}]")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the final line")
    p.set_defaults(handler=cmd_evaluate, command_parser=p)


def _convnet_of(names, path):
    """The --net name of a parameter file holding ``names``."""
    for net, count in (("simple-convnet", 3), ("deep-convnet", 8)):
        if set(names) == {f"{k}{i}" for k in "Wb" for i in range(1, count + 1)}:
            return net
    raise CommandError(f"{path}: cannot tell the network from its parameters "
                       f"{sorted(names)}: pass --net simple-convnet or --net deep-convnet")


def cmd_evaluate(parser, args):
    import pickle

    import numpy as np

    from ._param_pickle import load_array_dict
    from ._runtime import thread_limits

    _check_data_args(parser, args)
    try:
        names = list(load_array_dict(args.params))
    except (OSError, pickle.UnpicklingError) as exc:
        raise CommandError(f"cannot read {args.params}: {exc}") from None
    name = _convnet_of(names, args.params) if args.net == "auto" else args.net
    ((_, _), (x_test, t_test)), data_what = _load_data(args)
    net = getattr(_convnet_module(args.backend), CONVNETS[name])(dtype=np.dtype(args.dtype),
                                                                seed=0)
    try:
        net.load_params(args.params)
    except (OSError, pickle.UnpicklingError, ValueError) as exc:
        raise CommandError(f"cannot load {args.params} into {type(net).__name__}: "
                           f"{exc}") from None
    x = x_test.reshape((len(x_test),) + net.input_dim)
    batch = args.batch_size
    with thread_limits(args.threads):
        start = time.perf_counter()
        classes = np.concatenate([np.argmax(net.predict(x[i:i + batch]), axis=1)
                                  for i in range(0, len(x), batch)])
        elapsed = time.perf_counter() - start
    wrong = np.flatnonzero(classes != t_test)
    if not args.quiet:
        print(f"{net!r} ({args.backend} backend) with {args.params}")
        print(f"data: {data_what}, {len(x)} test images, batches of {batch}")
        shown = {int(i): (int(t_test[i]), int(classes[i])) for i in wrong[:args.show]}
        print(f"misclassified: {len(wrong)}; the first {len(shown)} as "
              f"{{index: (label, predicted)}}: {shown}")
    print(f"test accuracy: {1 - len(wrong) / len(x):.4f} ({len(x)} images, {elapsed:.2f} s, "
          f"{len(x) / max(elapsed, 1e-9):.0f} images/s)")
    return 0


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
# tune (the logic is fastbp.tune)
# ---------------------------------------------------------------------------

def _tune_parser(subparsers):
    from . import tune
    p = subparsers.add_parser(
        "tune", help="random search over lr and weight decay (the book's ch. 6)",
        description="The book's ch06/hyperparameter_optimization.py: train MultiLayerNet "
                    "(six hidden layers of 100, SGD, batch 100) once per trial on the "
                    f"first {tune.DEFAULT_SAMPLES} training images, "
                    f"{tune.DEFAULT_VALIDATION_RATE:.0%} of them (shuffled) held out for "
                    "validation, with lr and weight decay drawn log-uniformly; print the "
                    "trials sorted by final validation accuracy. Trials run in parallel "
                    "on local processes (joblib) or on a Dask cluster (--scheduler), one "
                    "thread each; trial i's draws, weights and batches come from "
                    "SeedSequence(seed, spawn_key=(i,)), so results don't depend on the "
                    "workers. The last line is 'N trials in T s: R trials/min (ENGINE)'.")
    p.add_argument("--trials", type=positive_int, default=100,
                   help="number of trials  [100, as the book]")
    p.add_argument("--jobs", type=worker_count, default=None, metavar="N",
                   help="local worker processes  [every core]")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run the trials on the Dask cluster whose scheduler is at ADDRESS "
                        "(tcp://host:8786; needs pip install 'fastbp[dask]'; start its "
                        "workers with --nthreads 1)")
    p.add_argument("--epochs", type=positive_int, default=tune.DEFAULT_EPOCHS,
                   help=f"epochs per trial  [{tune.DEFAULT_EPOCHS}]")
    _add_data_options(p)
    p.add_argument("--samples", type=positive_int, default=tune.DEFAULT_SAMPLES, metavar="N",
                   help=f"training images used, validation included  "
                        f"[{tune.DEFAULT_SAMPLES}]")
    p.add_argument("--validation-rate", type=positive_float,
                   default=tune.DEFAULT_VALIDATION_RATE, metavar="RATE",
                   help=f"fraction of them held out, in (0, 1)  "
                        f"[{tune.DEFAULT_VALIDATION_RATE}]")
    low, high = tune.DEFAULT_LR_RANGE
    p.add_argument("--lr-range", type=positive_float, nargs=2, default=(low, high),
                   metavar=("LOW", "HIGH"), help=f"learning rates, log scale  [{low:g} {high:g}]")
    low, high = tune.DEFAULT_WEIGHT_DECAY_RANGE
    p.add_argument("--weight-decay-range", type=positive_float, nargs=2, default=(low, high),
                   metavar=("LOW", "HIGH"),
                   help=f"weight decay lambdas, log scale  [{low:g} {high:g}]")
    p.add_argument("--hidden", type=hidden_sizes, default=list(tune.DEFAULT_HIDDEN),
                   metavar="N[,N...]", help="hidden layer widths  [100,100,100,100,100,100]")
    p.add_argument("--batch-size", type=positive_int, default=tune.DEFAULT_BATCH,
                   help=f"[{tune.DEFAULT_BATCH}]")
    p.add_argument("--optimizer", choices=OPTIMIZER_NAMES, default="sgd",
                   help="trained with the drawn lr  [sgd]")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="[float64]")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="master seed of the split and of every trial  [0]")
    p.add_argument("--top", type=positive_int, default=None, metavar="N",
                   help="print only the N best trials  [all]")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="plot the validation/training accuracy curves of the "
                        f"{tune.DEFAULT_PLOT_TRIALS} best trials, as the book (needs "
                        "matplotlib)")
    p.add_argument("--save", metavar="RESULTS.json", default=None,
                   help="write the settings and every trial (with its curves) as JSON")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no header, no progress bar")
    p.set_defaults(handler=cmd_tune, command_parser=p)


def cmd_tune(parser, args):
    import numpy as np

    from . import tune

    _check_data_args(parser, args)
    for option, (low, high) in (("--lr-range", args.lr_range),
                                ("--weight-decay-range", args.weight_decay_range)):
        if low > high:
            raise CommandError(f"{option}: expected LOW <= HIGH, got {low:g} {high:g}", code=2)
    if not args.validation_rate < 1:
        raise CommandError(f"--validation-rate: expected a fraction in (0, 1), got "
                           f"{args.validation_rate:g}", code=2)
    if args.scheduler is not None and args.jobs is not None:
        raise CommandError("--jobs is for local workers: with --scheduler the Dask "
                           "cluster's workers run the trials", code=2)
    if args.plot is not None:
        _check_plot_option(args.plot)
    if args.save is not None:
        _check_output_path("--save", args.save)
    import joblib
    workers = 1 if args.scheduler is not None else min(
        args.trials, args.jobs if args.jobs is not None else joblib.cpu_count())
    _check_memory("--batch-size and --hidden", [MNIST_PIXELS, *args.hidden, 10],
                  args.batch_size, args.dtype, args.optimizer, copies=workers)

    client = None
    if args.scheduler is not None:
        try:
            client = tune.connect_scheduler(args.scheduler)
        except ImportError as exc:
            raise CommandError(f"--scheduler: {exc}", code=2) from None
        except (ValueError, OSError) as exc:
            raise CommandError(f"--scheduler {args.scheduler}: {exc}", code=2) from None
    try:
        ((x_train, t_train), _), data_what = _load_data(args)
        if not args.quiet:
            n_in = int(np.prod(x_train.shape[1:]))
            sizes = "-".join(str(n) for n in [n_in, *args.hidden, 10])
            print(f"MultiLayerNet {sizes} (relu), {args.optimizer}, batch {args.batch_size}, "
                  f"{args.epochs} epochs, {args.dtype}")
            print(f"data: {data_what}, the first {args.samples} training images, "
                  f"{args.validation_rate:.0%} for validation (shuffled, seed {args.seed})")
            print(f"search: {args.trials} trials, lr in [{args.lr_range[0]:g}, "
                  f"{args.lr_range[1]:g}], weight decay in [{args.weight_decay_range[0]:g}, "
                  f"{args.weight_decay_range[1]:g}], log-uniform", flush=True)
        if client is None:
            import joblib
            jobs = args.jobs if args.jobs is not None else joblib.cpu_count()
        else:
            jobs = None
        try:
            result = tune.random_search(
                args.trials, lr_range=args.lr_range, weight_decay_range=args.weight_decay_range,
                epochs=args.epochs, hidden_size_list=args.hidden, batch_size=args.batch_size,
                optimizer=args.optimizer, dtype=args.dtype, data=(x_train, t_train),
                n_samples=args.samples, validation_rate=args.validation_rate, n_jobs=jobs,
                scheduler=client, seed=args.seed, progress=not args.quiet)
        except ValueError as exc:
            raise CommandError(str(exc), code=2) from None
    finally:
        if client is not None:
            client.close()

    print(result.table(top=args.top))
    if args.plot is not None:
        try:
            result.plot(args.plot)
        except (OSError, ValueError) as exc:
            raise CommandError(f"--plot {args.plot}: {exc}") from None
        if not args.quiet:
            print(f"saved curves to {args.plot}")
    if args.save is not None:
        try:
            result.save_json(args.save)
        except OSError as exc:
            raise CommandError(f"--save {args.save}: {exc}") from None
        if not args.quiet:
            print(f"saved results to {args.save}")
    best = result.best
    print(f"best: trial {best.index}, val acc {best.val_acc:.4f}, lr {best.lr:.3g}, "
          f"weight decay {best.weight_decay:.3g}")
    print(f"{len(result)} trials in {result.elapsed:.1f} s: {result.trials_per_minute:.1f} "
          f"trials/min ({result.engine})")
    return 0


# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------

#: the subcommands, in --help order: each adds its parser (handler=cmd_<name>)
SUBCOMMANDS = (_train_parser, _gradcheck_parser, _evaluate_parser, _info_parser, _bench_parser,
               _tune_parser)


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
    except MemoryError as exc:
        # the estimate before the run passed, yet an allocation failed
        print(f"fastbp: error: out of memory ({_one_line(str(exc)) or 'an allocation failed'}); "
              "use a smaller --batch-size or --hidden", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastbp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (fastbp info | head -1): stop quietly with the
        # status of a process ended by SIGPIPE, as Unix tools do; stdout goes to
        # /dev/null so the interpreter's last flush can't raise again
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return SIGPIPE_STATUS


def _one_line(message):
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
