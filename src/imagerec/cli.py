"""The `imagerec` command: parses arguments, makes one library call per command, prints the result.

Library errors (UserError) speak of Python arguments in backticks (`val_split`); they are printed as one line
`imagerec: error: ...` naming the command's flags instead (--val-split), with exit status 2.
"""

import argparse
import dataclasses
import json
import os
import re
import sys

# None of these imports TensorFlow, Keras or a server package: `imagerec --help` must not wait for them, and a
# machine without them still trains (commands load what they need when they run; `serve` alone loads uvicorn).
from imagerec import __version__, backends, data, export, workflows
from imagerec.errors import UserError, printable
from imagerec.evaluation import predict
from imagerec.serve.limits import ServeLimits
from imagerec.training import distribute, recipes

# The corruptions' names, for --help: written out here because data.corruptions imports SciPy, which --help must
# not wait for (tests/test_cli.py checks the two lists agree).
CORRUPTION_NAMES = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
                    "zoom_blur", "snow", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
                    "jpeg_compression", "gif_web", "gif_adaptive", "jpeg_low", "downscale", "grayscale")

# Library argument names whose flag is not --name-with-dashes, and the arguments that are positional.
LIBRARY_NAMES = {"run_dir": "out", "out_dir": "out", "data_source": "data", "max_extract_bytes": "max_extract_gb",
                 "format_name": "format", "report_dir": "report"}
POSITIONALS = {"model", "run_dir", "paths"}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + error; users asked for one clear line
        _say(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _say(text: str, **options) -> None:
    """print() for text that can hold names from users' files and models: control characters escaped."""
    print(printable(text), **options)


def _options():
    """{command: (help, [(flags, argparse options)])}; choices and defaults come from the library's constants."""
    model, data = _model_options(), _data_options()
    as_json = [(("--json",), dict(action="store_true", help="print JSON instead of text"))]
    return {
        "train": ("train a recipe into a run directory: model files, metrics, report", [*_train_options(), *_data_options("cifar10")]),
        "recipes": ("list the recipes and every setting --set can change", []),
        "evaluate": ("test accuracy and loss of a saved model; with --corruptions, its robustness",
                     [*model, *data, *as_json, *_evaluate_options()]),
        "report": ("write report.html, its figures and report.json for a finished run", [
            (("run_dir",), dict(help="a run directory written by `imagerec train`")), *model[1:], *data,
            *_report_options()]),
        "predict": ("top-k labels for image files or folders", [
            *model, (("paths",), dict(nargs="+", help="image files or folders (searched recursively)")),
            (("--top-k",), dict(type=int, default=5, help="labels per image (default 5)")),
            (("--explain",), dict(metavar="DIR", help="also write where the model looked (Grad-CAM) for each image "
                                  "there: an overlay PNG and the heatmap as .npy")), *as_json]),
        "export": ("write a model in a format, run it in that format's runtime and compare with Keras", [
            *model, (("--format",), dict(required=True, choices=export.FORMATS, help="tflite/onnx: the export extra")),
            (("--out",), dict(help="file (default exports/model.<format>); savedmodel: a folder for OUT/<version>/")),
            (("--quantize",), dict(choices=tuple(export.QUANTIZABLE), help="tflite/onnx: int8, calibrated on "
                                   "training images")),
            (("--calibration-images",), dict(type=int, default=256, help="for int8 (default 256)")),
            (("--check-images",), dict(type=int, default=256, help="test images compared (default 256)")),
            (("--version",), dict(type=int, help="savedmodel: the version folder (default: next free)")),
            *data, *as_json]),
        "doctor": ("find label errors, duplicates and leaks, and broken or odd images in a data set",
                   _doctor_options()),
        "serve": ("serve a model: web page, /predict, TF Serving's REST and gRPC APIs, Open Inference Protocol v2", [
            *model, (("--host",), dict(default="127.0.0.1", help="address (default 127.0.0.1; 0.0.0.0: everyone)")),
            (("--port",), dict(type=int, default=8500, help="port (default 8500)")),
            (("--grpc-port",), dict(type=int, default=None, help="also serve TF Serving's gRPC API on this port "
                                                                 "(off by default; TF Serving uses 8500 for gRPC "
                                                                 "and 8501 for REST)")),
            (("--name",), dict(default="cifar10", help="model name in /v1/models/NAME and /v2/models/NAME "
                                                       "(default cifar10)")),
            *_serve_limits()]),
    }


def _robustness_options() -> list:
    return [(("--severities",), dict(default="1-5", help="corruption severities: 1-5, 3 or 1,3,5 (default 1-5)")),
            (("--corruption-images",), dict(type=int, default=1000, help="test images corrupted, the same share of "
                                            "each class (default 1000; 0: all)"))]


def _evaluate_options() -> list:
    return [(("--report",), dict(metavar="DIR", help="also write report.html and its figures there")),
            (("--corruptions",), dict(metavar="all|cifar10c|user|NAME,...", help="also the accuracy on corrupted "
                                      "copies of the test images (CIFAR-10-C's, with its parameters, and what users "
                                      f"meet): {', '.join(CORRUPTION_NAMES)}")), *_robustness_options()]


def _report_options() -> list:
    return [(("--out",), dict(help="where to write the report (default RUN_DIR/report)")),
            (("--robustness",), dict(action="store_true", help="add a robustness section: accuracy under every "
                                     "corruption (see evaluate --corruptions)")),
            (("--corruptions",), dict(default="all", metavar="all|cifar10c|user|NAME,...", help="with --robustness "
                                      "(default all)")), *_robustness_options()]


def _model_options() -> list:
    return [(("model",), dict(help="a run directory, a .keras/.h5/.weights.h5 file or a SavedModel folder")),
            (("--trust-model",), dict(action="store_true", help="load a model that needs arbitrary code, or an "
                                      ".h5/SavedModel no imagerec manifest vouches for (only from authors you trust)"))]


def _data_options(default="the model's run's data, else cifar10") -> list:
    return [(("--data",), dict(help="'cifar10' (Keras download), an image folder with train/<class>/ [and test/], "
                                    f"an archive of one, or CIFAR-10's python files (default: {default})")),
            (("--val-split",), dict(type=float, default=0.2, help="test share when the data has no test/")),
            (("--seed",), dict(type=int, default=0, help="random seed, 0 to 4294967295 (default 0)")),
            (("--cache-dir",), dict(help="decoded arrays and extracted archives (default ~/.cache/imagerec)")),
            (("--max-extract-gb",), dict(type=float, help="largest archive expansion (default 100x)"))]


def _train_options() -> list:
    return [
        (("--recipe",), dict(default=recipes.DEFAULT, help=f"{', '.join(recipes.RECIPES)} (default "
                             f"{recipes.DEFAULT}); `imagerec recipes` shows their settings")),
        (("--out",), dict(help="run directory (default runs/<timestamp>)")),
        (("--epochs",), dict(type=int, help="the recipe's epochs, its schedule stretched to them (a two-phase "
                             "recipe keeps each phase's share; --set epochs=N is exact)")),
        (("--image-size",), dict(metavar="N|HxW", help="train at this size (default: 32 for CIFAR-10; for a folder, "
                                 f"its images' median shorter side within {data.DEFAULT_SIZE_BOUNDS[0]}-"
                                 f"{data.DEFAULT_SIZE_BOUNDS[1]} px)")),
        (("--mixed-precision",), dict(choices=recipes.PRECISIONS, help="auto (the airbench recipes' default): bf16 "
                                      "on a GPU or a CPU with bfloat16 instructions; off: float32")),
        (("--class-weight",), dict(choices=recipes.CLASS_WEIGHTS, help="balanced: each class's images weigh "
                                   "n / (classes * n_class) in the loss, for skewed classes (default none)")),
        (("--set",), dict(action="append", default=[], metavar="FIELD=VALUE", help="any recipe setting, e.g. "
                          "--set batch_size=512 --set mixed_precision=bf16 (repeatable)")),
        (("--backend",), dict(choices=backends.BACKENDS, help="Keras backend (default: $KERAS_BACKEND, else "
                              f"{backends.DEFAULT}); jax: the jax extra, airbench recipes, no TensorFlow needed")),
        (("--validation",), dict(choices=recipes.VALIDATIONS, default="auto", help="per-epoch "
                                 "validation: holdout (--val-split of train/, stratified; test/ is then used once, at "
                                 "the end), test, none; auto: test for the seed recipe (the tutorial's), else none")),
        (("--weights",), dict(default="none", metavar="none|imagenet|PATH", help="a Keras Applications backbone's "
                              "start (--model of the finetune recipe): random, ImageNet (internet once) or a "
                              ".weights.h5 file of it (default none)")),
        (("--model",), dict(help="the recipe's model (same as --set model=NAME); for the finetune recipe a Keras "
                            "Applications backbone: mobilenet_v3_small, efficientnet_v2_b0 or resnet50_v2")),
        (("--exclude",), dict(metavar="FILE", help="leave these files out of training: a doctor's issues.csv (edit "
                              "it to keep some) or a text file of paths relative to the data's root")),
        (("--init-from",), dict(metavar="RUN_DIR", help="start from an earlier run's weights (same model family): "
                                "layers matched by name and shape, a new head for new classes")),
        (("--trust-model",), dict(action="store_true", help="--init-from: load a model no imagerec manifest "
                                  "vouches for (only from authors you trust)")),
        (("--strategy",), dict(choices=distribute.STRATEGIES, default="auto", help="tf.distribute: every local "
                               "GPU, the TF_CONFIG cluster, or auto (mirrored with 2+ GPUs)")),
        (("--resume",), dict(action="store_true", help="continue the interrupted run in --out (same options)")),
        (("--deterministic",), dict(action="store_true", help="bit-identical weights for a --seed (CPU, in "
                                    "float32)")),
        (("--no-report",), dict(action="store_true", help="do not write RUN_DIR/report/")),
        (("--tensorboard",), dict(action="store_true", help="logs in RUN_DIR/tensorboard (the extra of that name)"))]


def _doctor_options() -> list:
    data_options = [option for option in _data_options() if option[0] != ("--data",)]
    return [
        (("data",), dict(help="what `train` takes: an image folder with train/<class>/ [and test/], an archive of "
                         "one, CIFAR-10's python files or 'cifar10'")),
        (("--out",), dict(help="where to write doctor.html, issues.csv, issues.json (default "
                          "runs/doctor-<timestamp>)")),
        (("--recipe",), dict(default="airbench_small", help="the recipe each fold trains (default airbench_small)")),
        (("--epochs",), dict(type=int, help="the recipe's epochs (its schedule stretched to them)")),
        (("--set",), dict(action="append", default=[], metavar="FIELD=VALUE", help="any setting of the recipe, "
                          "e.g. --set batch_size=64 for a small data set (repeatable)")),
        (("--folds",), dict(type=int, default=5, help="cross-validation folds over train/ (default 5)")),
        (("--model",), dict(metavar="RUN_DIR", help="judge the test split with this model instead of training "
                            "(train/'s labels are then not judged)")),
        (("--trust-model",), dict(action="store_true", help="--model: load a model no imagerec manifest vouches "
                                  "for (only from authors you trust)")),
        (("--image-size",), dict(metavar="N|HxW", help="decode at this size (default as for train)")),
        (("--no-views",), dict(action="store_true", help="predict without the recipe's test-time views (faster)")),
        (("--backend",), dict(choices=backends.BACKENDS, help="Keras backend (default: $KERAS_BACKEND, else "
                              f"{backends.DEFAULT})")),
        *data_options]


def _serve_limits() -> list:
    """One option per ServeLimits field, its help from the field (a flag --no-NAME for one on by default)."""
    options = []
    for field in dataclasses.fields(ServeLimits):
        flag, help_text = field.name.replace("_", "-"), field.metadata["help"]
        if field.type is bool:
            options.append(((f"--no-{flag}",), dict(dest=field.name, action="store_false", help=help_text)))
        else:
            default = f"{field.default:,}".removesuffix(".0")  # 1,024 and 16, not 1024 and 16.0
            options.append(((f"--{flag}",), dict(type=field.type, default=field.default,
                                                 help=f"{help_text} (default {default})")))
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="imagerec", description="Train, evaluate and use image classifiers (TensorFlow/Keras).")
    parser.add_argument("--version", action="version", version=f"imagerec {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_text, options) in _options().items():
        subparser = commands.add_parser(name, help=help_text, description=help_text)
        for flags, settings in options:
            subparser.add_argument(*flags, **settings)
    return parser


def _loading(arguments) -> dict:
    """What `data.load_dataset` takes from the data options."""
    return {"val_split": arguments.val_split, "seed": arguments.seed, "cache_dir": arguments.cache_dir,
            "max_extract_bytes": None if arguments.max_extract_gb is None else arguments.max_extract_gb * 1e9}


# ---------------------------------------------------------------- the commands: one library call each

def _train(arguments) -> int:
    shorthands = [f"{name}={value}" for name, value in (("mixed_precision", arguments.mixed_precision),
                                                         ("class_weight", arguments.class_weight),
                                                         ("model", arguments.model))
                  if value is not None]
    recipe = _recipe_then_keras(arguments, shorthands)
    from imagerec.training import run

    result = run.train(data.DEFAULT_SOURCE if arguments.data is None else arguments.data, recipe, arguments.out, arguments.seed,
                         data_options={**_loading(arguments), "image_size": arguments.image_size},
                         report=not arguments.no_report,
                         tensorboard=arguments.tensorboard, resume=arguments.resume, validation=arguments.validation,
                         init_from=arguments.init_from, trust_model=arguments.trust_model, weights=arguments.weights,
                         deterministic=arguments.deterministic, strategy=arguments.strategy,
                         exclude=arguments.exclude)
    metrics = result.metrics
    _say(f"imagerec: test accuracy {metrics['test_accuracy']:.4f} (balanced {metrics['test_balanced_accuracy']:.4f}), "
         f"loss {metrics['test_loss']:.4f}; trained in "
         f"{metrics['train_wall_s']:.0f} s; run directory {result.run_dir or '(written by the chief)'}"
         + (f"; report {result.report['path']}" if result.report else ""))
    return 0


def _evaluate(arguments) -> int:
    result = workflows.evaluate_model(arguments.model, arguments.data, report_dir=arguments.report,
                                      trust_model=arguments.trust_model, data_options=_loading(arguments),
                                      corruptions=arguments.corruptions, severities=arguments.severities,
                                      corruption_images=arguments.corruption_images)
    if arguments.json:
        print(json.dumps(result, indent=2))
        return 0
    _say(f"{arguments.model} ({result['format']}): test accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f} "
         f"on {result['count']} images of {result['data']}")
    if "robustness" in result:
        _say(_robustness_table(result["robustness"]))
    return 0


def _robustness_table(robustness: dict) -> str:
    """The robustness numbers as text: a row per corruption (accuracy % per severity, mean), then the summary."""
    from imagerec.evaluation import robustness as robustness_numbers

    severities = [str(severity) for severity in robustness["severities"]]
    lines = [f"{'corruption':<18}" + "".join(f"{severity:>7}" for severity in severities) + f"{'mean':>8}"]
    for name, row in robustness["corruptions"].items():
        lines.append(f"{name + ('' if row['cifar_c'] else ' *'):<18}" + "".join(
            f"{100 * row['accuracy'][severity]:7.1f}" if severity in row["accuracy"] else f"{'-':>7}"
            for severity in severities) + f"{100 * row['mean']:8.1f}")
    left_out = "; ".join(f"{name}: {why}" for name, why in robustness["left_out"].items())
    return "\n".join(lines + [f"* not CIFAR-10-C's (not in its mean). Left out: {left_out}",
                               "robustness: " + robustness_numbers.summary_line(robustness)])


def _report(arguments) -> int:
    numbers = workflows.report_run(arguments.run_dir, arguments.data, out_dir=arguments.out,
                                   trust_model=arguments.trust_model, data_options=_loading(arguments),
                                   robustness=arguments.robustness, corruptions=arguments.corruptions,
                                   severities=arguments.severities, corruption_images=arguments.corruption_images)
    _say(f"imagerec: report in {numbers['path']}: top-1 {100 * numbers['top1_accuracy']:.2f}% (balanced "
         f"{100 * numbers['balanced_accuracy']:.2f}%), top-3 "
         f"{100 * numbers['top3_accuracy']:.2f}%, ECE {100 * numbers['calibration']['expected_calibration_error']:.2f}%"
         f" on {numbers['count']} test images")
    return 0


def _predict(arguments) -> int:
    predictions, errors = workflows.predict_paths(arguments.model, arguments.paths, arguments.top_k,
                                                  arguments.trust_model, explain_dir=arguments.explain)
    print(json.dumps({"predictions": predictions, "errors": errors}, indent=2) if arguments.json
          else predict.table(predictions))  # JSON escapes control characters itself, and so does the table
    for error in errors:
        _say(f"imagerec: skipped {error['path']}: {error['error']}", file=sys.stderr)
    if not predictions:
        _say("imagerec: error: none of the files is a readable image", file=sys.stderr)
        return 2
    return 1 if errors else 0


def _export(arguments) -> int:
    result = workflows.export_run(arguments.model, arguments.format, arguments.out, arguments.data,
                                  quantize=arguments.quantize, check_images=arguments.check_images,
                                  calibration_images=arguments.calibration_images, version=arguments.version,
                                  trust_model=arguments.trust_model, data_options=_loading(arguments))
    print(json.dumps(result.as_dict(), indent=2)) if arguments.json else _say(
        f"imagerec: exported {export.describe(result)}")
    return 0


def _recipe_then_keras(arguments, shorthands=(), needed: bool = True):
    """The recipe the options name (None when not `needed`) and a checked image size, both before TensorFlow
    loads (a nonsense option fails fast); then the backend chosen and TensorFlow imported quietly."""
    recipe = None
    if needed:
        settings = recipes.parse_settings(arguments.recipe, arguments.set + list(shorthands))
        recipe = recipes.get_recipe(arguments.recipe, scaled_epochs=arguments.epochs, **settings)
    if arguments.image_size is not None:
        data.parse_image_size(arguments.image_size)
    if arguments.backend:
        backends.use(arguments.backend)  # before Keras is imported
    _import_tensorflow_quietly()
    return recipe


def _doctor(arguments) -> int:
    recipe = _recipe_then_keras(arguments, needed=arguments.model is None)
    result = workflows.doctor_data(arguments.data, arguments.out, recipe=recipe, folds=arguments.folds,
                                   model=arguments.model, seed=arguments.seed, trust_model=arguments.trust_model,
                                   views=not arguments.no_views,
                                   data_options={**_loading(arguments), "image_size": arguments.image_size})
    _say(f"imagerec: doctor.html, issues.csv and issues.json in {result.out_dir}")
    return 0


def _serve(arguments) -> int:
    limits = ServeLimits(**{field.name: getattr(arguments, field.name) for field in dataclasses.fields(ServeLimits)})
    workflows.serve_model(arguments.model, arguments.host, arguments.port, arguments.name, limits,
                          arguments.trust_model, grpc_port=arguments.grpc_port)
    return 0


COMMANDS = {"train": _train, "recipes": lambda arguments: print(recipes.describe()) or 0, "evaluate": _evaluate,
            "report": _report, "predict": _predict, "export": _export, "doctor": _doctor, "serve": _serve}


def main(argv=None) -> int:
    arguments = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ start-up chatter
    backends.choose_installed()  # no TensorFlow here: Keras on JAX
    try:
        if arguments.command not in ("train", "recipes", "doctor"):  # these check options before TensorFlow loads
            _import_tensorflow_quietly()
        return COMMANDS[arguments.command](arguments)
    except UserError as error:
        _say(f"imagerec: error: {_with_flags(str(error), vars(arguments))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _say("imagerec: interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # the disk or the file system said no (permissions, space, a vanished folder)
        _say(f"imagerec: error: {error.strerror or error}{': ' + str(error.filename) if error.filename else ''}",
             file=sys.stderr)
        return 2


def _with_flags(message: str, options: dict) -> str:
    """The library's `argument` names as this command's flags (`val_split` → --val-split, `run_dir` → RUN_DIR)."""
    def flag(match):
        name = match.group(1) if match.group(1) in options else LIBRARY_NAMES.get(match.group(1), match.group(1))
        if name not in options:
            return name + (match.group(2) or "")  # a recipe field, given with --set
        return name.upper() if name in POSITIONALS else "--" + name.replace("_", "-")
    return re.sub(r"`([a-z_]+)(=[^`]*)?`", flag, message)


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with stderr closed: its C++ start-up lines (oneDNN, CUDA probing) come before any Python
    setting can silence them, and users took them for errors. IMAGEREC_TF_LOGS=1 shows them."""
    if os.environ.get("IMAGEREC_TF_LOGS") == "1" or not backends.is_tensorflow() or not backends.has_tensorflow():
        return  # (without TensorFlow, the command says what needs it when it gets there)
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
