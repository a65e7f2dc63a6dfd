"""The `imagerec` command: parses arguments and calls the Python API; nothing else lives here.

User mistakes (UserError, bad options) print one line `imagerec: error: ...` and exit 2.
"""

import argparse
import json
import os
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + error; users asked for one clear line
        _say(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _say(text: str, **options) -> None:
    """print() for text that can hold names from users' files and models: control characters escaped."""
    from imagerec.errors import printable

    print(printable(text), **options)


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _seed(text: str) -> int:
    value = _int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be from 0 to {2**32 - 1}, got {value}")
    return value


def _folder(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, got an empty string")
    return text


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or a positive number, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _add_data_options(parser) -> None:
    parser.add_argument("--data", default="cifar10",
                        help="'cifar10' (Keras download, the default), an image folder with train/<class>/ "
                             "[and test/<class>/], a .tar.gz/.tgz/.zip of one, cifar-10-python.tar.gz, "
                             "or a cifar-10-batches-py folder")
    parser.add_argument("--val-split", type=_fraction, default=0.2,
                        help="fraction of each class held out as the test split when the data has no test/ "
                             "(default 0.2)")
    parser.add_argument("--seed", type=_seed, default=0, help="random seed, 0 to 4294967295 (default 0)")
    parser.add_argument("--cache-dir", default=None,
                        help="where decoded arrays and extracted archives are cached "
                             "(default $IMAGEREC_CACHE or ~/.cache/imagerec)")
    parser.add_argument("--max-extract-gb", type=_positive_float, default=None,
                        help="largest size an archive may expand to (default: 100x the archive's size, which no "
                             "image archive reaches and every archive bomb does)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="imagerec", description="Train, evaluate and use image classifiers (TensorFlow/Keras).")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a recipe and write a run directory")
    train.add_argument("--recipe", default="fast",
                       help="training recipe: the airbench-style 'fast' (10 epochs, the default), 'fast_medium' (8) "
                            "or 'fast_small' (4), or 'seed' (the original tutorial)")
    _add_data_options(train)
    train.add_argument("--out", type=_folder, default=None, help="run directory (default runs/<timestamp>)")
    train.add_argument("--epochs", type=_non_negative_int, default=None,
                       help="epochs: seed's phase 1 on original images (10), or fast's total (10)")
    train.add_argument("--aug-epochs", type=_non_negative_int, default=None,
                       help="seed only: epochs of phase 2, with shift/flip augmentation (5)")
    train.add_argument("--batch-size", type=_positive_int, default=None, help="images per step (seed: 32, fast: 1024)")
    train.add_argument("--learning-rate", type=_positive_float, default=None, help="seed: Adam step size (0.001); fast: per 1024 examples, decoupled (11.5)")
    train.add_argument("--model", default=None, help="override the recipe's model (e.g. 'tiny' for a smoke test)")
    train.add_argument("--no-report", action="store_true", help="do not write RUN_DIR/report/ after training")
    train.add_argument("--tensorboard", action="store_true",
                       help="write TensorBoard logs to RUN_DIR/tensorboard (needs: pip install 'imagerec[tensorboard]')")
    train.add_argument("--strategy", choices=("auto", "default", "mirrored", "multiworker"), default="auto",
                       help="tf.distribute strategy: 'mirrored' uses every local GPU, 'multiworker' the cluster in "
                            "TF_CONFIG; 'auto' (default) is mirrored with 2+ GPUs, else one device")
    train.add_argument("--resume", action="store_true",
                       help="continue the interrupted run in --out from its last completed epoch (same options)")
    train.add_argument("--deterministic", action="store_true",
                       help="TensorFlow op determinism: the same --seed gives bit-identical weights on a CPU")
    train.add_argument("--mixed-precision", choices=("off", "bf16", "fp16"), default="off",
                       help="train in bfloat16 (CPUs with AVX512_BF16/AMX, recent GPUs) or float16 (GPUs) with "
                            "float32 weights; saved models are float32 (default off)")
    train.add_argument("--xla", choices=("auto", "on", "off"), default="auto",
                       help="compile training with XLA: 'auto' (default) only when a GPU is visible")

    evaluate = commands.add_parser("evaluate", help="test accuracy and loss of a saved model")
    evaluate.add_argument("model", help="a .keras, .h5 or .weights.h5 file, a SavedModel folder or a run directory")
    _add_data_options(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of text")
    evaluate.add_argument("--report", default=None, metavar="DIR",
                          help="also write report.html, its figures and report.json into DIR")

    report = commands.add_parser("report", help="write report.html, its figures and report.json for a run")
    report.add_argument("run_dir", help="a run directory written by `imagerec train`")
    _add_data_options(report)
    report.set_defaults(data=None)  # default: the data the run was trained on (its metrics.json)
    report.add_argument("--out", type=_folder, default=None, help="where to write the report (default RUN_DIR/report)")

    predict = commands.add_parser("predict", help="top-k labels for image files or folders")
    predict.add_argument("model", help="a .keras, .h5 or .weights.h5 file, a SavedModel folder or a run directory")
    predict.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    predict.add_argument("--top-k", type=_positive_int, default=5, help="labels per image (default 5)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")

    export = commands.add_parser("export", help="write a model as keras/h5/savedmodel/tflite/onnx and check it")
    export.add_argument("model", help="a run directory, or a .keras/.h5/.weights.h5 file")
    export.add_argument("--format", required=True, choices=("keras", "h5", "savedmodel", "tflite", "onnx"),
                        help="tflite and onnx need: pip install 'imagerec[export]'")
    export.add_argument("--out", type=_folder, default=None,
                        help="file to write (default exports/model.<format>); for savedmodel the model's folder, "
                             "the export going in its next version folder OUT/1/, OUT/2/... (default exports/model)")
    export.add_argument("--quantize", choices=("int8",), default=None,
                        help="tflite or onnx: int8 weights and activations, calibrated on --calibration-images "
                             "training images")
    export.add_argument("--calibration-images", type=_positive_int, default=256,
                        help="training images that calibrate an int8 model's value ranges (default 256)")
    export.add_argument("--version", type=_positive_int, default=None,
                        help="savedmodel only: the version folder to write (default: the next free number)")
    export.add_argument("--check-images", type=_positive_int, default=256,
                        help="test images the export is run on and compared with Keras (default 256)")
    _add_data_options(export)
    export.set_defaults(data=None)  # default: the data the run was trained on (its metrics.json)
    export.add_argument("--json", action="store_true", help="print the check's numbers as JSON")

    serve = commands.add_parser("serve", help="serve a model: web page, /predict and TF Serving's REST API")
    serve.add_argument("model", help="a run directory, a .keras/.h5/.weights.h5 file or a SavedModel folder")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for everyone)")
    serve.add_argument("--port", type=_port, default=8500, help="port (default 8500, TF Serving's gRPC/REST habit)")
    serve.add_argument("--name", type=_model_name, default="cifar10",
                       help="model name in /v1/models/NAME (default cifar10)")
    _add_serve_limits(serve)

    for command in (evaluate, report, predict, export, serve):
        command.add_argument("--trust-model", action="store_true",
                             help="load a model that needs arbitrary code, or an .h5/SavedModel no imagerec "
                                  "manifest vouches for (a model is code: only for authors you trust)")
    return parser


def _add_serve_limits(parser) -> None:
    from imagerec.serve import ServeLimits

    default = ServeLimits()
    limits = parser.add_argument_group("limits (over a limit: 408 slow, 413 size, 400 counts, 503 queue full, "
                                       "504 deadline)")
    limits.add_argument("--max-body-mb", type=_positive_float, default=default.max_body_bytes / 2**20,
                        help=f"largest request body in MiB (default {default.max_body_bytes / 2**20:g})")
    limits.add_argument("--max-image-pixels", type=_positive_int, default=default.max_image_pixels,
                        help=f"largest image, width x height, checked before decoding (default {default.max_image_pixels:,})")
    limits.add_argument("--max-request-pixels", type=_positive_int, default=default.max_request_pixels,
                        help=f"pixels decoded for one request, summed over its images, checked before decoding "
                             f"(default {default.max_request_pixels:,})")
    limits.add_argument("--max-images", type=_positive_int, default=default.max_images,
                        help=f"files in one /predict upload (default {default.max_images})")
    limits.add_argument("--max-instances", type=_positive_int, default=default.max_instances,
                        help=f"instances in one TF Serving request (default {default.max_instances})")
    limits.add_argument("--max-concurrent", type=_positive_int, default=default.max_concurrent,
                        help=f"complete requests at work at once; more wait in the queue (default "
                             f"{default.max_concurrent})")
    limits.add_argument("--max-queue", type=_positive_int, default=default.max_queue,
                        help=f"requests waiting for a slot; more get 503 + Retry-After (default {default.max_queue})")
    limits.add_argument("--timeout-s", type=_positive_float, default=default.timeout_s,
                        help=f"deadline of a request from its arrival: body, parsing, decoding, queue and "
                             f"inference; later gets 504 (default {default.timeout_s:g})")
    limits.add_argument("--read-timeout-s", type=_positive_float, default=default.read_timeout_s,
                        help=f"time for a request's headers, and then for its body, to arrive (the body's grows by 1 s "
                             f"per 100 kB received); slower gets 408 (default {default.read_timeout_s:g})")
    limits.add_argument("--keep-alive-s", type=_positive_float, default=default.keep_alive_s,
                        help=f"an idle keep-alive connection is closed after this (default {default.keep_alive_s:g})")
    limits.add_argument("--max-connections", type=_positive_int, default=default.max_connections,
                        help=f"open connections; requests beyond get 503 (default {default.max_connections})")
    limits.add_argument("--workers", type=_positive_int, default=default.workers,
                        help=f"threads that parse JSON and decode images (default {default.workers})")
    limits.add_argument("--batch-window-ms", type=_non_negative_float, default=default.batch_window_ms,
                        help=f"how long a batch waits for more requests; 0: only those already queued while the "
                             f"model was busy (default {default.batch_window_ms:g})")
    limits.add_argument("--max-batch-size", type=_positive_int, default=default.max_batch_size,
                        help=f"images per model call (default {default.max_batch_size})")
    limits.add_argument("--no-batching", action="store_true", help="run each request on its own (for comparison)")


def _port(text: str) -> int:
    value = _int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {value}")
    return value


def _model_name(text: str) -> str:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", text):
        raise argparse.ArgumentTypeError(f"use letters, digits, '_', '.' and '-' (up to 64), got {text!r}")
    return text


def _version() -> str:
    from imagerec import __version__

    return f"imagerec {__version__}"


def main(argv=None) -> int:
    arguments = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ start-up chatter
    from imagerec.errors import UserError

    try:
        return {"train": _train, "evaluate": _evaluate, "predict": _predict, "report": _report,
                "export": _export, "serve": _serve}[arguments.command](arguments)
    except UserError as error:
        _say(f"imagerec: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _say("imagerec: interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # the disk or the file system said no (permissions, space, a vanished folder)
        where = f": {error.filename}" if error.filename else ""
        _say(f"imagerec: error: {error.strerror or error}{where}", file=sys.stderr)
        return 2


def _load_data(arguments, image_size=(32, 32)):
    from imagerec import data

    return data.load_dataset(arguments.data, image_size=image_size, val_split=arguments.val_split,
                             seed=arguments.seed, cache_dir=arguments.cache_dir,
                             max_extract_bytes=None if arguments.max_extract_gb is None
                             else int(arguments.max_extract_gb * 1e9))


def _train(arguments) -> int:
    from imagerec import fileio, recipes
    from imagerec.errors import UserError

    recipe = recipes.get_recipe(arguments.recipe, epochs=arguments.epochs,
                                augmented_epochs=arguments.aug_epochs, batch_size=arguments.batch_size,
                                learning_rate=arguments.learning_rate, model=arguments.model,
                                jit_compile={"auto": None, "on": True, "off": False}[arguments.xla],
                                mixed_precision=arguments.mixed_precision)
    if arguments.resume and not arguments.out:
        raise UserError("--resume needs --out: the run directory to continue")
    if arguments.tensorboard:
        _require_tensorboard()
    out = arguments.out or str(fileio.default_run_dir())
    if not arguments.resume and arguments.strategy != "multiworker":  # workers share --out; the chief checks it
        fileio.prepare_empty_dir(out, create=False)
    _import_tensorflow_quietly()
    from imagerec import distribute, models, train

    models.check_model_name(recipe.model)  # every option is checked before data is loaded or a file written
    dataset = _load_data(arguments)

    strategy = distribute.make_strategy(arguments.strategy)  # before any other TensorFlow work
    _say(f"imagerec: {dataset.source}: {len(dataset.y_train)} train / {len(dataset.y_test)} test images, "
          f"{dataset.num_classes} classes; recipe {recipe.name} ({recipe.total_epochs} epochs)"
          f"{_strategy_note(strategy)}", flush=True)
    callbacks = []
    if arguments.tensorboard and distribute.is_chief(strategy):
        import keras

        callbacks.append(keras.callbacks.TensorBoard(log_dir=os.path.join(out, "tensorboard")))
    result = train.train(dataset, recipe, out, seed=arguments.seed, strategy=strategy, callbacks=callbacks,
                         resume=arguments.resume, deterministic=arguments.deterministic)
    metrics = result.metrics
    _say(f"imagerec: test accuracy {metrics['test_accuracy']:.4f}, loss {metrics['test_loss']:.4f}; "
          f"trained in {metrics['train_wall_s']:.0f} s; run directory "
          f"{result.run_dir if distribute.is_chief(strategy) else '(written by the chief)'}")
    if not arguments.no_report and distribute.is_chief(strategy):
        from imagerec import report, saving

        classifier = saving.Classifier.from_keras(result.model, dataset.class_names, result.run_dir)
        report.write_report(result.run_dir / "report", classifier, dataset.x_test, dataset.y_test,
                            run_dir=result.run_dir, dataset=dataset, probabilities=result.test_probabilities)
        _say(f"imagerec: report in {result.run_dir / 'report' / 'report.html'}")
    return 0


def _require_tensorboard() -> None:
    # TensorFlow 2.21 does not depend on tensorboard, and Keras' callback then fails mid-run (TBNotInstalledError).
    from imagerec.errors import UserError

    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package: pip install 'imagerec[tensorboard]'") from None


def _strategy_note(strategy) -> str:
    replicas = strategy.num_replicas_in_sync
    return "" if replicas == 1 and type(strategy).__name__ == "_DefaultDistributionStrategy" else \
        f"; {type(strategy).__name__}, {replicas} replica(s)"


def _check_model_path(path) -> None:
    from imagerec.errors import UserError

    if not os.path.exists(path):
        raise UserError(f"model path does not exist: {path}")


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with stderr closed at the file-descriptor level.

    TensorFlow's C++ runtime logs start-up lines (oneDNN, CUDA probing) before any Python setting can
    silence them, and users took them for errors. IMAGEREC_TF_LOGS=1 shows them (e.g. to debug a GPU).
    """
    if os.environ.get("IMAGEREC_TF_LOGS") == "1":
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe logs here, once
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _load_model_and_data(arguments, model_path):
    """The model (safely, or as --trust-model says) and the data of --data at its input size, same classes."""
    from imagerec import saving
    from imagerec.errors import UserError

    classifier = saving.load_model(model_path, trust_model=arguments.trust_model)
    dataset = _load_data(arguments, image_size=classifier.input_shape[:2])
    if dataset.num_classes != len(classifier.class_names):
        raise UserError(f"the data has {dataset.num_classes} classes but the model predicts "
                        f"{len(classifier.class_names)}")
    return classifier, dataset


def _evaluate(arguments) -> int:
    _check_model_path(arguments.model)
    _import_tensorflow_quietly()
    from imagerec import evaluate

    classifier, dataset = _load_model_and_data(arguments, arguments.model)
    result = evaluate.evaluate(classifier, dataset.x_test, dataset.y_test)
    result.update({"model": str(arguments.model), "format": classifier.format, "data": dataset.source})
    if arguments.report:
        from imagerec import report

        report.write_report(arguments.report, classifier, dataset.x_test, dataset.y_test,
                            run_dir=arguments.model if os.path.isdir(arguments.model) else None, dataset=dataset)
        result["report"] = os.path.join(arguments.report, "report.html")
    if arguments.json:
        print(json.dumps(result, indent=2))
    else:
        _say(f"{arguments.model} ({classifier.format}): test accuracy {result['accuracy']:.4f}, "
              f"loss {result['loss']:.4f} on {result['count']} images of {dataset.source}")
    return 0


def _report(arguments) -> int:
    from imagerec.errors import UserError

    run_dir = arguments.run_dir
    if not os.path.isdir(run_dir) or not os.path.isfile(os.path.join(run_dir, "metrics.json")):
        raise UserError(f"{run_dir} is not a finished run directory (it has no metrics.json)")
    if arguments.data is None:
        arguments.data = _run_data_source(run_dir)
    _import_tensorflow_quietly()
    from imagerec import report

    classifier, dataset = _load_model_and_data(arguments, run_dir)
    out_dir = arguments.out or os.path.join(run_dir, "report")
    numbers = report.write_report(out_dir, classifier, dataset.x_test, dataset.y_test, run_dir=run_dir,
                                  dataset=dataset)
    _say(f"imagerec: report in {os.path.join(out_dir, 'report.html')}: top-1 {100 * numbers['top1_accuracy']:.2f}%, "
          f"top-3 {100 * numbers['top3_accuracy']:.2f}%, ECE {100 * numbers['calibration']['expected_calibration_error']:.2f}% "
          f"on {numbers['count']} test images")
    return 0


def _predict(arguments) -> int:
    from imagerec import evaluate

    _check_model_path(arguments.model)
    files = evaluate.find_image_files(arguments.paths)  # before TensorFlow loads: bad paths fail fast
    _import_tensorflow_quietly()
    from imagerec import saving

    classifier = saving.load_model(arguments.model, trust_model=arguments.trust_model)
    predictions, errors = evaluate.predict_files(classifier, files, top_k=arguments.top_k)
    if arguments.json:
        print(json.dumps({"predictions": predictions, "errors": errors}, indent=2))
    else:
        _print_table(predictions)
    for error in errors:
        _say(f"imagerec: skipped {error['path']}: {error['error']}", file=sys.stderr)
    if not predictions:
        _say("imagerec: error: none of the files is a readable image", file=sys.stderr)
        return 2
    return 1 if errors else 0


def _print_table(predictions) -> None:
    from imagerec.errors import printable

    width = max(len(printable(item["path"])) for item in predictions) if predictions else 0
    for item in predictions:
        labels = "  ".join(f"{top['label']} {100 * top['probability']:5.1f}%" for top in item["top"])
        _say(f"{printable(item['path']):<{width}}  {labels}")


def _run_data_source(model_path) -> str:
    """The data a run was trained on (its metrics.json, in the model's folder or up to two above), else cifar10."""
    from pathlib import Path

    path = Path(model_path).resolve()
    for folder in [path, *list(path.parents)[:2]]:
        try:
            with open(folder / "metrics.json", encoding="utf-8") as handle:
                return json.load(handle).get("data", {}).get("source") or "cifar10"
        except (OSError, ValueError, AttributeError):
            continue
    return "cifar10"


def _export(arguments) -> int:
    from imagerec.errors import UserError

    _check_model_path(arguments.model)
    if arguments.version is not None and arguments.format != "savedmodel":
        raise UserError("--version applies to --format savedmodel only")
    if arguments.data is None:
        arguments.data = _run_data_source(arguments.model)
    _import_tensorflow_quietly()
    from imagerec import export

    classifier, dataset = _load_model_and_data(arguments, arguments.model)
    import numpy as np

    generator = np.random.default_rng(arguments.seed)
    check = generator.choice(len(dataset.x_test), min(arguments.check_images, len(dataset.x_test)), replace=False)
    calibration = generator.choice(len(dataset.x_train), min(arguments.calibration_images, len(dataset.x_train)),
                                   replace=False)
    out = arguments.out or ("exports/model" if arguments.format == "savedmodel"
                            else export.default_path(arguments.format, arguments.quantize))
    result = export.export_model(classifier, out, arguments.format, dataset.x_test[check], dataset.y_test[check],
                                 quantize=arguments.quantize, calibration_images=dataset.x_train[calibration],
                                 version=arguments.version)
    if arguments.json:
        print(json.dumps(result.as_dict(), indent=2))  # JSON escapes control characters itself
    else:
        _say(f"imagerec: exported {export.describe(result)}")
    return 0


def _serve(arguments) -> int:
    from imagerec.serve import ServeLimits

    _check_model_path(arguments.model)
    limits = ServeLimits(max_body_bytes=int(arguments.max_body_mb * 2**20), max_image_pixels=arguments.max_image_pixels,
                         max_request_pixels=arguments.max_request_pixels, max_images=arguments.max_images,
                         max_instances=arguments.max_instances, max_concurrent=arguments.max_concurrent,
                         max_queue=arguments.max_queue, timeout_s=arguments.timeout_s,
                         read_timeout_s=arguments.read_timeout_s, keep_alive_s=arguments.keep_alive_s,
                         max_connections=arguments.max_connections, workers=arguments.workers,
                         batch_window_ms=arguments.batch_window_ms, max_batch_size=arguments.max_batch_size,
                         batching=not arguments.no_batching)
    _check_port_free(arguments.host, arguments.port)
    _import_tensorflow_quietly()
    from imagerec import saving, serve

    classifier = saving.load_model(arguments.model, trust_model=arguments.trust_model)
    if arguments.host not in ("127.0.0.1", "localhost", "::1"):
        _say(f"imagerec: warning: listening on {arguments.host}: anyone who can reach this machine can use the "
              f"model (there is no authentication)", file=sys.stderr)
    _say(f"imagerec: serving {arguments.model} ({classifier.format}, {len(classifier.class_names)} classes) as "
          f"'{arguments.name}' on http://{arguments.host}:{arguments.port}/", flush=True)
    serve.run_server(classifier, arguments.host, arguments.port, arguments.name, limits)
    return 0


def _check_port_free(host: str, port: int) -> None:
    import socket

    from imagerec.errors import UserError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UserError(f"cannot listen on {host}: {error.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise UserError(f"cannot listen on {host}:{port}: {error.strerror}") from None
