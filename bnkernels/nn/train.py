"""Train a small BN-Inception network on scikit-learn's 8x8 digits, with and
without batch normalization (``python -m bnkernels train``).

Both runs use the same architecture (``inception.small_inception``: without
BN every ConvBNReLU is a convolution with bias followed by ReLU), the same
initial convolution weights, the same batches in the same order and the same
SGD schedule. The learning rate is the one knob: at the default 0.1 the
network without BN needs several times more steps to reach the target
accuracy, and at 0.5 it diverges while the one with BN trains: the effects
the BN paper reports (Ioffe and Szegedy 2015, section 4.2).

The data (1797 images of 8x8 pixels, 0..16, ten classes; the UCI optical
digits test set) ships with scikit-learn, so nothing is downloaded. A fixed
permutation splits it into 1437 training and 360 test images. Pixels are
scaled to [0, 1]; nothing else is normalized, so that BN has work to do.

Reported: per-epoch training loss and accuracy and test loss and accuracy;
test accuracy every ``--eval-every`` steps; and the first step at which test
accuracy reaches ``--target``. ``--json`` writes all of it, ``--plot`` draws
the curves (matplotlib).
"""
import argparse
from collections.abc import Callable
import importlib.util
import json
import math
import os
import platform
import sys
import time
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from bnkernels._deprecation import renamed_keyword
from bnkernels._typing import FloatArray
from bnkernels.batchnorm import NUMERICS
from bnkernels.module import Module
from bnkernels.nn.layers import SoftmaxCrossEntropy
from bnkernels.tools.cli import (ProgressBar, fraction, nonnegative_float, nonnegative_int,
                                 output_path_error, positive_int)

Labels = npt.NDArray[np.integer[Any]]
VARIANTS = {"bn": True, "no-bn": False}
MAX_WIDTH = 256   # the 8x8 digits need far less; 256 is about 10 M parameters


def load_digits(*, rng: int | np.random.Generator | None = 0, test_size: int = 360,
                seed: int | None = None) -> tuple[FloatArray, Labels, FloatArray, Labels]:
    """(x_train, y_train, x_test, y_test): scikit-learn's digits as float32
    (N, 1, 8, 8) images in [0, 1] and int64 labels, split by a permutation
    drawn from rng (an int seed, None or a numpy Generator)."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:
        raise ImportError("python -m bnkernels train needs scikit-learn for its data set "
                          "(the 8x8 digits ship with it): pip install scikit-learn, or "
                          "pip install bnkernels[train]") from error
    digits = sklearn_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    rng = renamed_keyword("seed", seed, "rng", rng, 0)
    order = np.random.default_rng(rng).permutation(len(labels))
    test, train = order[:test_size], order[test_size:]
    return images[train], labels[train], images[test], labels[test]


def evaluate(model: Module, loss_fn: SoftmaxCrossEntropy, x: FloatArray, y: Labels,
             *, batch_size: int = 512) -> tuple[float, float]:
    """(mean loss, accuracy) of model in eval mode over x, y."""
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        logits = model.forward(x[start:start + batch_size])
        labels = y[start:start + batch_size]
        total_loss += loss_fn.forward(logits, labels) * len(labels)
        correct += int(np.sum(np.argmax(logits, axis=1) == labels))
    model.train()
    return total_loss / len(y), correct / len(y)


def train_one(batch_norm: bool, data: tuple[FloatArray, Labels, FloatArray, Labels],
              args: argparse.Namespace, progress: ProgressBar, log: Callable[[str], object]
              ) -> dict[str, Any]:
    """Train one network; returns its record (curves, steps to target, time)."""
    from bnkernels.nn import inception, layers, optim

    x_train, y_train, x_test, y_test = data
    name = "bn" if batch_norm else "no-bn"
    model = inception.small_inception(num_classes=10, in_channels=1, width=args.width,
                                      batch_norm=batch_norm, numerics=args.numerics,
                                      rng=args.seed)
    loss_fn = layers.SoftmaxCrossEntropy()
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                          weight_decay=args.weight_decay)
    batches = np.random.default_rng(args.seed + 1)  # same batches for both variants
    steps_per_epoch = len(y_train) // args.batch_size
    record: dict[str, Any] = {"batch_norm": batch_norm, "epochs": [], "evals": [],
                              "steps_to_target": None, "diverged_at_step": None}
    step, start = 0, time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = batches.permutation(len(y_train))
        losses, correct, seen = [], 0, 0
        for i in range(steps_per_epoch):
            progress.show(f"{name}: epoch {epoch}/{args.epochs}, step {step + 1}")
            pick = order[i * args.batch_size:(i + 1) * args.batch_size]
            optimizer.zero_grad()
            with np.errstate(over="ignore", invalid="ignore"):   # divergence: caught below
                logits = model.forward(x_train[pick])
                loss = loss_fn.forward(logits, y_train[pick])
            step += 1
            progress.advance()
            if not math.isfinite(loss):
                record["diverged_at_step"] = step
                break
            model.backward(loss_fn.backward(), input_grad=False)
            optimizer.step()
            losses.append(loss)
            correct += int(np.sum(np.argmax(logits, axis=1) == y_train[pick]))
            seen += len(pick)
            if step % args.eval_every == 0:
                _, accuracy = evaluate(model, loss_fn, x_test, y_test)
                record["evals"].append({"step": step, "test_accuracy": accuracy})
                if record["steps_to_target"] is None and accuracy >= args.target:
                    record["steps_to_target"] = step
        if record["diverged_at_step"] is not None:
            progress.close()
            log(f"{name:>5}  epoch {epoch:>2}: loss is not finite at step {step}: diverged")
            break
        test_loss, test_accuracy = evaluate(model, loss_fn, x_test, y_test)
        row = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)),
               "train_accuracy": correct / seen, "test_loss": test_loss,
               "test_accuracy": test_accuracy}
        record["epochs"].append(row)
        progress.close()
        log(f"{name:>5}  epoch {epoch:>2}  step {step:>4}  train loss {row['train_loss']:.4f}"
            f"  acc {row['train_accuracy']:.3f}  test loss {test_loss:.4f}"
            f"  acc {test_accuracy:.3f}")
    record["seconds"] = time.perf_counter() - start
    record["final_test_accuracy"] = (record["epochs"][-1]["test_accuracy"]
                                     if record["epochs"] else None)
    return record


def write_plot(path: str | os.PathLike[str], result: dict[str, Any]) -> None:
    """Test accuracy against steps and training loss against epochs, both runs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4))
    FigureCanvasAgg(figure)
    accuracy, loss = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for name, run in result["runs"].items():
        label = "with BN" if run["batch_norm"] else "without BN"
        accuracy.plot([e["step"] for e in run["evals"]],
                      [e["test_accuracy"] for e in run["evals"]], label=label)
        loss.plot([e["epoch"] for e in run["epochs"]],
                  [e["train_loss"] for e in run["epochs"]], label=label)
    target = result["config"]["target"]
    accuracy.axhline(target, color="grey", linestyle=":", label=f"target {target:g}")
    accuracy.set(xlabel="training step", ylabel="test accuracy", ylim=(0, 1),
                 title="digits 8x8, small BN-Inception")
    loss.set(xlabel="epoch", ylabel="training loss (mean over the epoch)", yscale="log",
             title=f"SGD lr {result['config']['lr']:g}, momentum "
                   f"{result['config']['momentum']:g}")
    for axes in (accuracy, loss):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def parse_width(text: str) -> int:
    width = positive_int(text)
    if not 2 <= width <= MAX_WIDTH:
        raise argparse.ArgumentTypeError(f"{text!r} is not a width from 2 to {MAX_WIDTH}")
    return width


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--epochs", type=positive_int, default=20,
                        help="passes over the training images (default 20)")
    parser.add_argument("--batch-size", type=positive_int, default=64,
                        help="images per step, at most the 1437 training images (default 64)")
    parser.add_argument("--lr", type=nonnegative_float, default=0.1,
                        help="SGD learning rate (default 0.1)")
    parser.add_argument("--momentum", type=nonnegative_float, default=0.9,
                        help="SGD momentum (default 0.9)")
    parser.add_argument("--weight-decay", type=nonnegative_float, default=5e-4,
                        help="SGD L2 weight decay (default 5e-4)")
    parser.add_argument("--width", type=parse_width, default=16,
                        help=f"channels of the stem, 2 to {MAX_WIDTH}; the blocks scale with "
                             "it (default 16)")
    parser.add_argument("--numerics", choices=NUMERICS, default="standard",
                        help="batch-norm numerics of the BN run (default standard)")
    parser.add_argument("--variants", type=parse_variants, default="bn,no-bn",
                        help="comma-separated runs: bn, no-bn (default: bn,no-bn)")
    parser.add_argument("--target", type=fraction, default=0.95,
                        help="test accuracy whose first step is reported (default 0.95)")
    parser.add_argument("--eval-every", type=positive_int, default=5,
                        help="steps between test evaluations (default 5)")
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="seed of the weights, the data split and the batch order "
                             "(default 0)")
    parser.add_argument("--json", metavar="PATH", help="write curves and summary as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write the curves as a PNG (matplotlib)")
    return parser


def parse_variants(text: str) -> list[str]:
    """``"bn,no-bn"`` -> ``["bn", "no-bn"]`` (the --variants option)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                         f"{', '.join(VARIANTS)}")
    return list(dict.fromkeys(names))


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Run the command; returns the exit status."""
    out = sys.stdout if out is None else out

    def usage_error(message):
        print(f"python -m bnkernels train: error: {message}", file=sys.stderr)
        return 2

    if args.plot and importlib.util.find_spec("matplotlib") is None:
        return usage_error("--plot needs matplotlib, which is not installed: "
                           "pip install matplotlib")
    for problem in (output_path_error("--json", args.json),
                    output_path_error("--plot", args.plot)):
        if problem:
            return usage_error(problem)
    try:
        data = load_digits(rng=args.seed)
    except ImportError as error:
        return usage_error(error)
    if args.batch_size > len(data[1]):
        return usage_error(f"--batch-size {args.batch_size} is more than the "
                           f"{len(data[1])} training images")
    variants = args.variants

    def log(line):
        print(line, file=out, flush=True)

    steps = len(data[1]) // args.batch_size * args.epochs
    progress = ProgressBar(steps * len(variants))
    config = {key: value for key, value in vars(args).items()
              if key not in ("json", "plot", "command")}
    config.update(variants=",".join(variants), train_images=len(data[1]),
                  test_images=len(data[3]))
    log(f"digits 8x8: {len(data[1])} training, {len(data[3])} test images; "
        f"{args.epochs} epochs of {len(data[1]) // args.batch_size} steps, batch "
        f"{args.batch_size}, SGD lr {args.lr:g} momentum {args.momentum:g} "
        f"weight decay {args.weight_decay:g}")
    runs = {}
    for name in variants:
        runs[name] = train_one(VARIANTS[name], data, args, progress, log)
    progress.close()
    result = {"config": config, "runs": runs,
              "machine": {"python": platform.python_version(), "numpy": np.__version__,
                          "platform": platform.platform()}}
    log(f"\nfirst step with test accuracy >= {args.target:g} (evaluated every "
        f"{args.eval_every} steps):")
    for name, record in runs.items():
        reached = record["steps_to_target"]
        outcome = (f"step {reached}" if reached is not None else
                   f"diverged at step {record['diverged_at_step']}"
                   if record["diverged_at_step"] is not None else "not reached")
        final = record["final_test_accuracy"]
        log(f"  {name:>5}: {outcome}; final test accuracy "
            f"{'-' if final is None else f'{final:.3f}'}; {record['seconds']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        log(f"wrote {args.json}")
    if args.plot:
        write_plot(args.plot, result)
        log(f"wrote {args.plot}")
    return 0
