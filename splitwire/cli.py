"""``splitwire`` command line: export, serve, send, bench, demo, eval."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _export(a) -> int:
    import torch

    from . import models
    from .split import SplitError, split_points

    spec = models.load(a.model, a.input_size)
    if a.list:
        example = torch.zeros((1, *spec.input_shape))
        points = split_points(spec.module, example)
        names = {p.name for p in points}
        print(f"split points of {a.model} (input {list(spec.input_shape)}), in execution order:")
        print(f"  {'module':<34} {'type':<26} {'features':<18} {'KB float32':>10}")
        for p in points:
            # Hide modules nested in another split point (e.g. a block's last BN) unless --all.
            nested = any(p.name.startswith(n + ".") for n in names)
            if nested and not a.all and p.name not in spec.split_points and p.name != spec.default_split:
                continue
            shape = "x".join(map(str, p.shape[1:]))
            mark = ("  (default)" if p.name == spec.default_split
                    else "  (recommended)" if p.name in spec.split_points else "")
            print(f"  {p.name:<34} {p.kind:<26} {shape:<18} {p.elements * 4 / 1024:>10.1f}{mark}")
        if not a.all:
            print("  (--all also lists points inside these modules)")
        return 0

    from codec_cupy import ConfigError as CodecConfigError

    from .export import VerificationError, export_split

    layer = a.split or spec.default_split
    if not layer:
        print("--split LAYER is required for this model (see --list)", file=sys.stderr)
        return 2
    name = a.name or a.model.replace(":", "_").replace(".", "_")
    inputs = {}
    if (a.components is None) != (a.project is None):
        print("error: --components K and --project IMAGE... go together (K principal components, fitted on "
              "the features of those images)", file=sys.stderr)
        return 2
    for flag, paths in (("--calibrate", a.calibrate), ("--prior", a.prior), ("--project", a.project)):
        if paths:
            try:
                inputs[flag] = _calibration_inputs(paths, spec.preprocess or {})
            except (OSError, ValueError) as e:
                print(f"error: {flag}: {e}", file=sys.stderr)
                return 1
    calibration = inputs.get("--calibrate")
    try:
        res = export_split(spec.module, layer, a.out, name=name, input_shape=spec.input_shape, bits=a.bits,
                           granularity=a.granularity, clip=a.clip, quantizer=a.quantizer,
                           transform=a.transform, block=a.block, step=a.step,
                           frequency_weight=a.frequency_weight, search=a.search, preprocess=spec.preprocess,
                           labels=spec.labels, tail_backend=a.tail_backend,
                           device=a.device, max_batch=a.max_batch, instances=a.instances,
                           channel_axis=spec.channel_axis, calibration=calibration, prior=inputs.get("--prior"),
                           prior_tables=a.prior_tables, projection=inputs.get("--project"),
                           components=a.components, projection_weighting=a.projection_weighting)
    except (SplitError, VerificationError, CodecConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    shape = "x".join(map(str, res.point.shape[1:]))
    if res.projection is None:
        print(f"cut {a.model} after {layer!r} ({res.point.kind}): features {shape}; "
              f"max |tail(head(x)) - model(x)| = {res.max_abs_error:.2e}")
    else:
        p = res.projection
        agree = ("n/a (one image)" if p["held_out_agreement"] is None
                 else f"{p['held_out_agreement']:.1f} % top-1 agreement with the unsplit model")
        print(f"cut {a.model} after {layer!r} ({res.point.kind}): features {shape}, projected on "
              f"{p['components']} of {p['channels']} {'Fisher-weighted ' if p['method'] == 'fisher' else ''}principal "
              f"components ({100 * p['energy']:.1f} % of the {'weighted ' if p['method'] == 'fisher' else ''}variance "
              f"of {p['inputs']} image(s); held out: {agree}); max |ONNX - torch| = {res.max_abs_error:.2e}")
    if calibration is not None:
        codec = res.codec
        print(f"calibrated the codec on {len(calibration)} image(s): pack {codec['pack']}, tables {codec['tables']}, "
              f"prob_bits {codec['prob_bits']} (clients skip the planner's search)")
    if res.prior is not None:
        p = res.prior
        print(f"fitted a shared prior on {p['inputs']} image(s): id {p['id']}, {p['tables']} tables, {p['bytes']} bytes "
              "(next to the decoder and the head; clients fetch it)")
        h = p["held_out"]
        if h is None:
            print("  (one image: no held-out estimate of its gain; clients use it)")
        elif h["ratio"] < 1:
            print(f"  held out (fitted on half the images, measured on the others): {100 * (1 - h['ratio']):.1f} % "
                  "fewer bytes than self-contained blobs; clients use it")
        else:
            print(f"  held out (fitted on half the images, measured on the others): {100 * (h['ratio'] - 1):.1f} % MORE "
                  "bytes than self-contained blobs; clients will not use it unless asked (SplitClient(prior=True)). "
                  "Fit on more images, or leave --prior out for these features")
    print(f"wrote {', '.join(res.models)} to {Path(a.out).resolve()}")
    print(f"next: splitwire serve {a.out}   then   splitwire send --model {name} IMAGE")
    return 0


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _calibration_inputs(paths: list[str], preprocess: dict) -> list:
    """Model inputs of the images at ``paths`` (files, or folders: their images, sorted)."""
    from client.preprocess import load_image

    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise ValueError(f"{p} is neither an image file nor a folder")
    if not files:
        raise ValueError(f"no images ({', '.join(_IMAGE_SUFFIXES)}) in {', '.join(paths)}")
    return [load_image(f, preprocess) for f in files]


def _serve(a) -> int:
    from .serve import TritonServer, docker_command, resolve_ports, serve_forever

    if a.print_command:
        print(docker_command(a.repository, http_port=a.http_port or 8000, grpc_port=a.grpc_port or 8001,
                             metrics_port=a.metrics_port or 8002, gpus=not a.cpu))
        return 0
    http, grpc, metrics = resolve_ports(a.http_port, a.grpc_port, a.metrics_port)
    server = TritonServer(a.repository, http_port=http, grpc_port=grpc, metrics_port=metrics,
                          address=a.address, tritonserver=a.tritonserver, backend_dir=a.backend_dir,
                          extra_backends=a.extra_backends, log=a.log, verbose=a.verbose)
    return serve_forever(server)


def _send(a) -> int:
    from client import SplitClient, topk

    url = a.url or ("127.0.0.1:8001" if a.grpc else "127.0.0.1:8000")
    client = SplitClient(url, a.model, protocol="grpc" if a.grpc else "http", head=a.head, bits=a.bits,
                         payload=a.payload)
    results = []
    for image in a.images:
        y, t = client.infer_timed(image)
        top = topk(y, client.labels, 5)[0]
        results.append({"image": image, "top5": top, "bytes_sent": t.bytes_sent, "raw_bytes": t.raw_bytes,
                        "ms": {"head": t.head_s * 1e3, "encode": t.encode_s * 1e3,
                               "round_trip": t.round_trip_s * 1e3}})
        if not a.json:
            print(f"{image}")
            for label, p in top:
                print(f"  {p:6.1%}  {label}")
            print(f"  sent {t.bytes_sent / 1024:.2f} KB ({a.payload}) vs {t.raw_bytes / 1024:.1f} KB raw float32 "
                  f"({t.ratio:.1f}x); head {t.head_s * 1e3:.1f} ms, encode {t.encode_s * 1e3:.2f} ms, "
                  f"round trip {t.round_trip_s * 1e3:.1f} ms")
    if a.json:
        print(json.dumps(results, indent=1))
    client.close()
    return 0


def _bench(a) -> int:
    import importlib
    import sys as _sys

    root = str(Path(__file__).resolve().parent.parent)  # bench/ lives in the source tree
    if root not in _sys.path:
        _sys.path.insert(0, root)
    try:
        mod = importlib.import_module({"codec": "bench.codec_cpu", "serve": "bench.serve"}[a.which])
    except ModuleNotFoundError as e:
        print(f"the benchmarks run from a source checkout ({e})", file=sys.stderr)
        return 2
    return mod.main(a.args)


def _demo(a) -> int:
    from .demo import run

    summary = run(bits=a.bits, split=a.split, out=a.out, protocol="grpc" if a.grpc else "http",
                  ports=(a.http_port, a.grpc_port, a.metrics_port))
    return 0 if summary["split_matches_unsplit"] == summary["images"] or a.bits < 8 else 1


def _eval(a) -> int:
    from .evaluation import ConfigError

    root = Path(__file__).resolve().parent.parent
    config = a.config or str(root / "configs" / "eval" / ("quick.yaml" if a.quick else "default.yaml"))
    try:
        from .evaluation.config import load_config

        cfg = load_config(config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out) if a.out else Path("results") / "eval" / cfg.name
    from .evaluation.plots import plot_all
    from .evaluation.writers import read_results, write_results

    if a.results:
        results = read_results(a.results)
        out = Path(a.results) if Path(a.results).is_dir() else Path(a.results).parent
    else:
        from .evaluation.runner import run_sweep

        results = run_sweep(cfg, out, progress=not a.no_progress)
        paths = write_results(results, out)
        print(f"{len(results['points'])} points in {results['wall_s']:.0f} s -> {paths['json']}, {paths['csv']}")
    plots = plot_all(results, out / "plots")
    print("plots: " + ", ".join(map(str, plots)))
    errors = [r for r in results["points"] if r.get("error")]
    if errors:
        print(f"{len(errors)} point(s) failed or were skipped (see 'error' in results.json)", file=sys.stderr)
    if a.report:
        from .evaluation.report import write_report

        md = Path(a.report)
        intro_file = Path(a.report_intro) if a.report_intro else None
        intro = intro_file.read_text() if intro_file and intro_file.is_file() else ""
        write_report(results, out / "plots", md, intro=intro, copy_plots_to=md.parent / "results")
        print(f"report: {md}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="splitwire", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    e = sub.add_parser("export", help="cut a model, export head/tail ONNX, write a Triton repository")
    e.add_argument("--model", default="efficientnet_lite0",
                   help="efficientnet_lite0, efficientnet_lite1, tiny_resnet, or package.module:factory")
    e.add_argument("--split", help="qualified module name from named_modules(), e.g. _blocks.8 (see --list)")
    e.add_argument("--list", action="store_true", help="show the split points and exit")
    e.add_argument("--all", action="store_true", help="with --list: include points nested in modules")
    e.add_argument("--out", default="model_repository", help="Triton model repository to write into")
    e.add_argument("--name", help="model name in the repository (default: the model's name)")
    e.add_argument("--bits", type=int, default=8, help="codec bits the client should use (1-8)")
    e.add_argument("--granularity", default="tensor", choices=["tensor", "channel"])
    e.add_argument("--clip", default="none", choices=["none", "percentile", "mse"])
    e.add_argument("--quantizer", default="uniform", choices=["uniform", "ecsq"])
    e.add_argument("--transform", default="none", choices=["none", "dct"],
                   help="dct: block DCT of the feature maps before quantization (smooth, dense maps)")
    e.add_argument("--block", type=int, default=8, help="with --transform dct: block size, 2..16")
    e.add_argument("--step", type=float, default=0.02,
                   help="with --transform dct: quantization step as a fraction of the tensor's range")
    e.add_argument("--frequency-weight", type=float, default=0.0,
                   help="with --transform dct: frequency (u, v) gets step * (1 + weight * (u + v))")
    e.add_argument("--search", default="greedy", choices=["greedy", "full"],
                   help="the codec planner's search the client runs per tensor: full = smaller blobs at "
                        "1-2 bits on many-channel ReLU features, slower encode")
    e.add_argument("--tail-backend", default="python", choices=["python", "onnxruntime"],
                   help="python: onnxruntime inside the Python backend (bundled server); "
                        "onnxruntime: Triton's onnxruntime backend (NGC images)")
    e.add_argument("--device", default="cpu", choices=["cpu", "gpu"], help="KIND_CPU or KIND_GPU instances")
    e.add_argument("--max-batch", type=int, default=16, help="largest batch one blob may carry")
    e.add_argument("--instances", type=int, default=1, help="instances of the decoder and the tail")
    e.add_argument("--input-size", type=int, help="override the input resolution")
    e.add_argument("--calibrate", nargs="+", metavar="IMAGE",
                   help="images (or folders of images) whose features fix the codec's entropy model once "
                        "(pack, tables, prob_bits): clients then skip the planner's search per tensor")
    e.add_argument("--prior", nargs="+", metavar="IMAGE",
                   help="images (or folders of images) whose features fit a shared per-position prior: "
                        "clients send blobs without tables, the decoder holds the prior (post-ReLU features: "
                        "4-17 %% fewer bytes; with --transform dct it models each sample's blocks x frequencies, "
                        "23-68 %% fewer bytes on Fashion-MNIST features; bits >= 2)")
    e.add_argument("--prior-tables", type=int, default=32, help="at most this many tables in the prior (1-256)")
    e.add_argument("--components", type=int, metavar="K",
                   help="with --project: send the first K principal components of the feature channels instead "
                        "of the channels (the head ends with the projection, the tail starts with the "
                        "reconstruction). With --transform dct and --prior, the Fashion-MNIST Swin-T splits stay "
                        "within 1 point of top-1 on all 10,000 test images at 0.29-0.47 bits per element, "
                        "57-68 %% below the DCT with a prior alone")
    e.add_argument("--project", nargs="+", metavar="IMAGE",
                   help="images (or folders of images) whose features fit the channel projection of --components")
    e.add_argument("--projection-weighting", choices=("pca", "fisher"), default="pca",
                   help="with --components: 'fisher' fits the PCA of the channels weighted by the tail's Fisher "
                        "information on the --project images (no labels needed), keeping the components the "
                        "tail's output depends on; on the Fashion-MNIST VGG16, DenseNet-121 and EfficientNet-B0 "
                        "splits it keeps more top-1 than the plain PCA at the same rate (docs/RESULTS.md)")
    e.set_defaults(fn=_export)

    s = sub.add_parser("serve", help="start tritonserver on a model repository")
    s.add_argument("repository", nargs="?", default="model_repository")
    s.add_argument("--http-port", type=int, default=8000, help="0 picks a free port")
    s.add_argument("--grpc-port", type=int, default=8001)
    s.add_argument("--metrics-port", type=int, default=8002)
    s.add_argument("--address", default="127.0.0.1", help="address to listen on (0.0.0.0 for all)")
    s.add_argument("--tritonserver", help="a tritonserver binary (default: the one in nvidia-pytriton)")
    s.add_argument("--backend-dir", help="Triton backend directory (with --tritonserver)")
    s.add_argument("--extra-backends", help="directory of more backends (e.g. onnxruntime/) to add to the bundled one")
    s.add_argument("--log", help="server log file (default: a temp file)")
    s.add_argument("--verbose", type=int, default=0)
    s.add_argument("--print-command", action="store_true", help="print the equivalent `docker run` (NGC image)")
    s.add_argument("--cpu", action="store_true", help="with --print-command: no --gpus")
    s.set_defaults(fn=_serve)

    c = sub.add_parser("send", help="classify images through a split model on a server")
    c.add_argument("images", nargs="+")
    c.add_argument("--url", help="server address (default 127.0.0.1:8000, with --grpc 127.0.0.1:8001)")
    c.add_argument("--model", default="efficientnet_lite0")
    c.add_argument("--grpc", action="store_true", help="use gRPC (then --url is the gRPC port)")
    c.add_argument("--head", help="local head.onnx (default: fetched from the server and cached)")
    c.add_argument("--bits", type=int, help="override the published codec bits")
    c.add_argument("--payload", default="splitwire", choices=["splitwire", "fp16", "raw"],
                   help="what to send: codec blob, or uncompressed float16/float32 frames (baseline)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=_send)

    b = sub.add_parser("bench", help="benchmarks: codec (bench/codec_cpu.py), serve (bench/serve.py)")
    b.add_argument("which", choices=["codec", "serve"])
    b.add_argument("args", nargs=argparse.REMAINDER, help="passed on (see --help of each)")
    b.set_defaults(fn=_bench)

    d = sub.add_parser("demo", help="export EfficientNet-Lite0, serve, classify 20 images, compare, stop")
    d.add_argument("--bits", type=int, default=8)
    d.add_argument("--split", help="default: _blocks.8 (a middle block)")
    d.add_argument("--out", help="keep the model repository here (default: a temp dir)")
    d.add_argument("--grpc", action="store_true")
    d.add_argument("--http-port", type=int, default=0, help="default: a free port")
    d.add_argument("--grpc-port", type=int, default=0)
    d.add_argument("--metrics-port", type=int, default=0)
    d.set_defaults(fn=_demo)

    v = sub.add_parser("eval", help="rate-accuracy sweep: models x split points x codecs (configs/eval/*.yaml)")
    v.add_argument("config", nargs="?", help="sweep YAML (default: configs/eval/default.yaml)")
    v.add_argument("--quick", action="store_true", help="the CI sweep, configs/eval/quick.yaml (< 3 min)")
    v.add_argument("--out", help="output directory (default: results/eval/<config name>/)")
    v.add_argument("--results", help="skip the sweep: re-plot/report an existing results.json (or its folder)")
    v.add_argument("--report", nargs="?", const="docs/RESULTS.md",
                   help="also write the markdown report (default docs/RESULTS.md; plots copied to docs/results/)")
    v.add_argument("--report-intro", help="markdown file whose text opens the report")
    v.add_argument("--no-progress", action="store_true", help="no progress bar")
    v.set_defaults(fn=_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    from client import ClientError

    from .serve import ServerError
    from .triton_env import TritonNotFound

    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        return 130
    except (ServerError, TritonNotFound, ClientError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
