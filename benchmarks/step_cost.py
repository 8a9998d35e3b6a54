"""Cost of a ResNet training step on this machine: by precision, batch-norm implementation and
batch size, against the CPU's own matrix-multiply speed, with a kernel profile of where the time
goes.

**Throughput.** For each configuration (``float32`` or ``mixed_bfloat16`` Keras dtype policy,
Keras' own batch norm or ``cnnbook.training.fused_norm.fused_batch_norm``, each ``--batch-sizes``),
train ResNet-20 (``--depth``) on augmented batches of the CIFAR-10 training images through
``cnnbook.course.data.training_dataset`` and measure the wall time and the process CPU time per
image. The configurations take turns for ``--rounds`` rounds after one warm-up each; the best
round (wall) and the mean CPU time per image are printed, each also as a ratio to Keras' default
step (``float32``, Keras' batch norm, the first batch size). On a shared machine the CPU time is
the steadier figure.

**Work done.** A training step does three passes of the network's multiply-accumulates (forward,
gradient of the inputs, gradient of the weights), so a step costs about ``6 * MACs`` floating-point
operations per image, MACs from ``cnnbook.counting.accounting.macs`` (an overcount by the first
convolution's input gradient, which is never computed: under 1% for ResNet-20). Achieved FLOP/s is
that times images per second.

**The CPU's peak** (``--no-peak`` skips it): the FLOP/s of a large matrix product (``tf.matmul`` of
two 2048x2048 matrices, oneDNN's GEMM, best of 5) in float32 and bfloat16 on this process's cores:
the practical ceiling of a convolution, which oneDNN computes as small matrix products.

**Profile** (``--profile``): each configuration runs again in a child process with
``ONEDNN_VERBOSE=profile_exec``, which makes oneDNN print one line per kernel it executes with the
kernel's name and milliseconds. :func:`summarise_onednn_profile` adds up those of the timed steps
(after 3 warm-up steps) per kind of kernel
(convolution forward / input gradient / weight gradient, batch norm, reorders between memory
layouts, ...) over the timed steps, and computes each convolution kernel's FLOP/s from the problem
it names (``2 * mb * ic/g * oc * oh * ow * kh * kw``). The kernels' milliseconds over the step's
wall time (``kernel_ms_over_step_ms``) is below 1 when TensorFlow's own work (element-wise
operations, the optimizer, the executor) takes a share, and can exceed 1 when TensorFlow runs two
kernels at once. Timing every kernel slows the step a little, so the shares and each kernel's
FLOP/s, not the absolute times, are the figures.

Run by hand, never in CI:

    CNNBOOK_DATA=../shared/data/cifar10 python benchmarks/step_cost.py --rounds 3 --profile
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import json
import os
import re
import subprocess
import sys
import time

VERBOSE_PREFIX = "onednn_verbose,v1,primitive,exec,"
CONV_PROBLEM = re.compile(
    r"^(?:g(?P<g>\d+))?mb(?P<mb>\d+)_ic(?P<ic>\d+)oc(?P<oc>\d+)"
    r"(?:_id\d+od\d+kd\d+sd\d+dd\d+pd\d+)?"
    r"_ih\d+oh(?P<oh>\d+)kh(?P<kh>\d+)sh\d+dh\d+ph\d+"
    r"_iw\d+ow(?P<ow>\d+)kw(?P<kw>\d+)sw\d+dw\d+pw\d+$"
)
CONV_PASSES = {"forward_training": "forward", "forward_inference": "forward",
               "backward_data": "input gradient", "backward_weights": "weight gradient",
               "backward": "input gradient"}


def convolution_flops(problem: str) -> int:
    """Floating-point operations of one convolution from oneDNN's problem string, e.g.
    ``mb128_ic16oc32_ih32oh16kh3sh2dh0ph1_iw32ow16kw3sw2dw0pw1``: ``2 * mb * (ic / g) * oc * oh *
    ow * kh * kw`` (a multiply and an add per weight per output value; ``g`` groups, default 1).
    Each of a convolution's three passes does this many."""
    match = CONV_PROBLEM.match(problem)
    if match is None:
        raise ValueError(f"not a 2-D convolution problem in oneDNN's verbose format: {problem!r}")
    size = {key: int(value) if value else 1 for key, value in match.groupdict().items()}
    return (2 * size["mb"] * (size["ic"] // size["g"]) * size["oc"] * size["oh"] * size["ow"]
            * size["kh"] * size["kw"])


def kernel_kind(primitive: str, prop_kind: str) -> str:
    """A readable name for a kind of oneDNN kernel: ``convolution, weight gradient``,
    ``batch_normalization, backward``, ``reorder``..."""
    if primitive == "convolution":
        return f"convolution, {CONV_PASSES.get(prop_kind, prop_kind)}"
    if prop_kind in ("undef", ""):
        return primitive
    return f"{primitive}, {prop_kind}"


TIMED_STEPS_START = "cnnbook-step-cost: timed steps start"
"""The line the profiling child writes between its warm-up steps and its timed ones."""


def summarise_onednn_profile(lines, steps: int, step_marker: str = "ic3oc") -> dict:
    """Per kind of kernel, the milliseconds, calls and (convolutions) FLOPs per training step, from
    the lines oneDNN prints under ``ONEDNN_VERBOSE=profile_exec``
    (``onednn_verbose,v1,primitive,exec,cpu,<primitive>,<implementation>,<prop_kind>,<memory>,
    <attributes>,<auxiliary>,<problem>,<milliseconds>``) after the line
    :data:`TIMED_STEPS_START`, over ``steps`` training steps.

    The network's first convolution (the only one whose problem contains ``step_marker``: 3 input
    channels) runs forward once a step: their count must equal ``steps``, which checks that the
    lines are the whole of the timed steps. Returns ``steps``, ``kernel_ms_per_step`` (all
    kernels) and ``kinds``: for each kind, ``ms_per_step``, ``calls_per_step``, ``share`` of the
    kernel time, ``implementations`` (oneDNN's kernel names) and, for convolutions,
    ``gflop_per_step`` and ``gflop_per_s``."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number of timed steps >= 1, got {steps!r}")
    milliseconds = collections.Counter()
    calls = collections.Counter()
    flops = collections.Counter()
    implementations = collections.defaultdict(set)
    started, step_starts = False, 0
    for line in lines:
        started = started or line.rstrip("\n") == TIMED_STEPS_START
        if not started or not line.startswith(VERBOSE_PREFIX):
            continue
        fields = line.rstrip("\n").split(",")
        if len(fields) < 13:
            raise ValueError(f"a oneDNN verbose line with fewer fields than its format: {line!r}")
        primitive, implementation, prop_kind = fields[5], fields[6], fields[7]
        problem, elapsed = fields[-2], float(fields[-1])
        if (primitive == "convolution" and prop_kind.startswith("forward")
                and step_marker in problem):
            step_starts += 1
        kind = kernel_kind(primitive, prop_kind)
        milliseconds[kind] += elapsed
        calls[kind] += 1
        implementations[kind].add(implementation)
        if primitive == "convolution":
            flops[kind] += convolution_flops(problem)
    if not started or step_starts != steps:
        raise ValueError(
            f"expected the oneDNN kernels of {steps} timed steps after the line "
            f"{TIMED_STEPS_START!r}, found {'that line and ' if started else 'no such line and '}"
            f"{step_starts} runs of the first convolution (problem containing {step_marker!r}): "
            "was ONEDNN_VERBOSE=profile_exec set, and did the child flush its output first?"
        )
    total = sum(milliseconds.values())
    kinds = {}
    for kind, elapsed in milliseconds.most_common():
        entry = {
            "ms_per_step": round(elapsed / steps, 2),
            "calls_per_step": round(calls[kind] / steps, 2),
            "share": round(elapsed / total, 4),
            "implementations": sorted(implementations[kind]),
        }
        if kind in flops:
            entry["gflop_per_step"] = round(flops[kind] / steps / 1e9, 3)
            entry["gflop_per_s"] = round(flops[kind] / (elapsed / 1000) / 1e9, 1)
        kinds[kind] = entry
    return {"steps": steps, "kernel_ms_per_step": round(total / steps, 2), "kinds": kinds}


def _tensorflow():
    # TensorFlow takes seconds to import: the profile's parser above is tested without it
    import cnnbook  # noqa: F401, I001  (first: it quietens TensorFlow's start-up)
    import keras

    return keras


def matmul_gflops(dtype: str, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s (in GFLOP/s) of ``tf.matmul`` of two ``size`` x ``size`` matrices of ``dtype``: the
    best of ``repeats`` rounds of 5 products, ``2 * size**3`` operations each."""
    _tensorflow()
    import tensorflow as tf  # after cnnbook, which quietens its start-up

    a = tf.cast(tf.random.stateless_normal((size, size), seed=(0, 1)), dtype)
    b = tf.cast(tf.random.stateless_normal((size, size), seed=(0, 2)), dtype)
    product = tf.function(tf.matmul)
    product(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(5):
            result = product(a, b)
        result.numpy()
        best = min(best, (time.perf_counter() - start) / 5)
    return 2 * size**3 / best / 1e9


def build(depth: int, policy: str, batch_size: int, *, steps_total: int = 10_000):
    keras = _tensorflow()
    from cnnbook.nets import models
    from cnnbook.training import train

    keras.utils.set_random_seed(0)
    with train.fast_precision(policy):
        model = models.resnet_cifar(depth)
    model.compile(
        optimizer=train.make_optimizer("he2015", steps_total, batch_size),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def batch_norm_context(model, bn: str):
    from cnnbook.training import fused_norm

    return fused_norm.fused_batch_norm(model) if bn == "fused" else contextlib.nullcontext()


def stream(batch_size: int):
    _tensorflow()
    from cnnbook.course import data

    (x_train, y_train), _ = data.load_cifar10()
    return data.training_dataset(x_train, y_train, batch_size, seed=0)


def profile_child(depth: int, policy: str, bn: str, batch_size: int, steps: int) -> None:
    """Run in a child with ONEDNN_VERBOSE=profile_exec: 3 warm-up steps, the line
    :data:`TIMED_STEPS_START`, then ``steps`` timed steps; the last line printed to stderr (away
    from oneDNN's lines) is the timed steps' wall time."""
    model = build(depth, policy, batch_size)
    batches = stream(batch_size)
    with batch_norm_context(model, bn):
        model.fit(batches, steps_per_epoch=3, epochs=1, verbose=0)
        # oneDNN prints through C's buffered stdout: flush it, then write the boundary straight
        # to the file descriptor, so that every warm-up line comes before it
        ctypes.CDLL(None).fflush(None)
        os.write(1, (TIMED_STEPS_START + "\n").encode())
        start = time.perf_counter()
        model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
        print(json.dumps({"wall_s": time.perf_counter() - start}), file=sys.stderr, flush=True)


def profile(depth: int, policy: str, bn: str, batch_size: int, steps: int) -> dict:
    command = [sys.executable, __file__, "--profile-child", policy, bn, str(batch_size),
               "--depth", str(depth), "--steps", str(steps)]
    env = {**os.environ, "ONEDNN_VERBOSE": "profile_exec"}
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"the profiling child failed ({completed.returncode}):\n"
                           f"{completed.stderr[-3000:]}")
    wall_s = json.loads(completed.stderr.strip().splitlines()[-1])["wall_s"]
    summary = summarise_onednn_profile(completed.stdout.splitlines(), steps)
    step_ms = 1000 * wall_s / steps
    summary["step_ms_while_profiled"] = round(step_ms, 1)
    # above 1 when TensorFlow ran two kernels at once (independent gradients of one layer)
    summary["kernel_ms_over_step_ms"] = round(summary["kernel_ms_per_step"] / step_ms, 3)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true",
                        help="also profile each configuration's oneDNN kernels (a child each)")
    parser.add_argument("--no-peak", action="store_true", help="skip the matrix-product ceiling")
    parser.add_argument("--profile-child", nargs=3, metavar=("POLICY", "BN", "BATCH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile_child:
        policy, bn, batch_size = args.profile_child
        profile_child(args.depth, policy, bn, int(batch_size), args.steps)
        return

    keras = _tensorflow()
    from cnnbook.counting import accounting, speed

    configs = [(policy, bn, batch) for batch in args.batch_sizes
               for policy in ("float32", "mixed_bfloat16") for bn in ("keras", "fused")]
    baseline = f"float32/keras/{args.batch_sizes[0]}"
    streams = {batch: stream(batch) for batch in args.batch_sizes}
    runs = {config: build(args.depth, config[0], config[2]) for config in configs}
    macs_per_image = accounting.macs(runs[configs[0]])
    results = {"/".join(map(str, config)): {"wall": [], "cpu": []} for config in configs}
    loads = [os.getloadavg()]
    for round_index in range(args.rounds + 1):
        for (policy, bn, batch), model in runs.items():
            with batch_norm_context(model, bn):
                wall, cpu = time.perf_counter(), time.process_time()
                model.fit(streams[batch], steps_per_epoch=args.steps, epochs=1, verbose=0)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if round_index:  # round 0 traces and warms up
                images = args.steps * batch
                results[f"{policy}/{bn}/{batch}"]["wall"].append(images / wall)
                results[f"{policy}/{bn}/{batch}"]["cpu"].append(1000 * cpu / images)
        loads.append(os.getloadavg())
        print(f"round {round_index}: load {loads[-1][0]:.2f}", flush=True)
    best = {name: max(r["wall"]) for name, r in results.items()}
    cpu_ms = {name: sum(r["cpu"]) / len(r["cpu"]) for name, r in results.items()}
    report = {
        "depth": args.depth, "steps": args.steps, "rounds": args.rounds,
        "macs_per_image": macs_per_image,
        "training_gflop_per_image": round(6 * macs_per_image / 1e9, 4),
        "baseline": baseline,
        "configurations": {
            name: {
                "best_images_per_second": round(best[name]),
                "images_per_second": [round(v) for v in results[name]["wall"]],
                "cpu_ms_per_image": round(cpu_ms[name], 3),
                "speed_up_best_wall": round(best[name] / best[baseline], 2),
                "speed_up_cpu_time": round(cpu_ms[baseline] / cpu_ms[name], 2),
                "achieved_gflop_per_s": round(6 * macs_per_image * best[name] / 1e9, 1),
            }
            for name in results
        },
        "load_averages_1_5_15": [[round(v, 2) for v in load] for load in loads],
        "machine": speed.machine_description(), "keras": keras.__version__,
    }
    if not args.no_peak:
        report["matmul_gflop_per_s"] = {
            dtype: round(matmul_gflops(dtype), 1) for dtype in ("float32", "bfloat16")}
        for name, entry in report["configurations"].items():
            dtype = "bfloat16" if "bfloat16" in name else "float32"
            entry["share_of_matmul_peak"] = round(
                entry["achieved_gflop_per_s"] / report["matmul_gflop_per_s"][dtype], 3)
    if args.profile:
        report["profiles"] = {}
        for policy, bn, batch in configs:
            name = f"{policy}/{bn}/{batch}"
            print(f"profiling {name}", flush=True)
            report["profiles"][name] = profile(args.depth, policy, bn, batch, args.steps)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
