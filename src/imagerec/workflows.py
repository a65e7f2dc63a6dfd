"""The library's workflows on saved models: each `imagerec` command after `train` is one call here.

Training is `training.run.train`; these load a model (safely unless `trust_model`) and, where they need
data, the data at the model's input size with the model's classes, then evaluate, report, export, predict or
serve. `data_options` go to `load_dataset` (val_split, seed, cache_dir, max_extract_bytes). Each imports the
floor it needs when it runs (only `serve_model` imports the server packages).
"""

import os
import sys
from pathlib import Path

from imagerec.artefacts import layout, loading, rundir
from imagerec.data import load as data_load
from imagerec.errors import UserError, printable
from imagerec.evaluation import evaluate, predict

def load_model_and_data(model, data_source=None, trust_model: bool = False, data_options=None):
    """(Classifier, Dataset): the model at `model` (a run directory or any saved format) and `data_source`
    (default: the data its run was trained on, else CIFAR-10) at the model's input size. UserError when the
    data's classes are not the model's."""
    if data_source is not None and not str(data_source).strip():
        raise UserError("`data_source` is an empty name: give a folder, an archive or 'cifar10'")
    source = data_source if data_source is not None else rundir.data_source(model) or data_load.DEFAULT_SOURCE
    classifier = loading.load_model(model, trust_model=trust_model)
    same_split = data_source is None and rundir.held_out_validation(model)  # the run's cache, not a new decode
    dataset = data_load.load_dataset(source, image_size=classifier.input_shape[:2], hold_out_validation=same_split,
                                **(data_options or {}))
    if dataset.num_classes != len(classifier.class_names):
        raise UserError(f"the data has {dataset.num_classes} classes but the model predicts "
                        f"{len(classifier.class_names)}")
    return classifier, dataset


def evaluate_model(model, data_source=None, *, report_dir=None, trust_model: bool = False, data_options=None,
                   corruptions=None, severities="1-5", corruption_images: int = 1000) -> dict:
    """Test accuracy, loss, count and per-class accuracy of `model` on the test split of `data_source`, with
    the model's path and format and the data's source; `report_dir` also writes a report there. `corruptions`
    ("all", "cifar10c", "user" or names, `data.corruptions`) adds accuracy on corrupted copies of
    `corruption_images` test images (0: all) at `severities`, under "robustness"."""
    wanted = _robustness_request(corruptions, severities, corruption_images)  # a nonsense option fails first
    classifier, dataset = load_model_and_data(model, data_source, trust_model, data_options)
    probabilities = classifier.predict_proba_selective(dataset.x_test)
    result = {**evaluate.score(probabilities, dataset.y_test, classifier.class_names),
              "model": str(model), "format": classifier.format, "data": dataset.source}
    robustness = _robustness(classifier, dataset, wanted, (data_options or {}).get("seed", 0))
    if robustness is not None:
        result["robustness"] = robustness
    if report_dir is not None:
        from imagerec.evaluation import report

        report.write_report(report_dir, classifier, dataset.x_test, dataset.y_test, dataset=dataset,
                            probabilities=probabilities, robustness=robustness)
        result["report"] = os.path.join(report_dir, report.REPORT_HTML)
    return result


def report_run(run_dir, data_source=None, *, out_dir=None, trust_model: bool = False, data_options=None,
               robustness: bool = False, corruptions="all", severities="1-5", corruption_images: int = 1000) -> dict:
    """Write the report of a finished run (default into its report/ folder), on the test split of the data it
    was trained on (or `data_source`), with its training curves and settings; returns the report's numbers
    and, under "path", its report.html. `robustness`: with a robustness section (`evaluate_model`'s
    `corruptions`, `severities` and `corruption_images`)."""
    from imagerec.evaluation import report

    wanted = _robustness_request(corruptions if robustness else None, severities, corruption_images)
    run_dir = rundir.check_finished(run_dir)
    classifier, dataset = load_model_and_data(run_dir, data_source, trust_model, data_options)
    out_dir = out_dir or layout.report_dir(run_dir)
    numbers = report.write_report(out_dir, classifier, dataset.x_test, dataset.y_test, dataset=dataset,
                                  history=rundir.read_history(run_dir), run=rundir.read_metrics(run_dir),
                                  robustness=_robustness(classifier, dataset, wanted,
                                                         (data_options or {}).get("seed", 0)))
    return {**numbers, "path": os.path.join(out_dir, report.REPORT_HTML)}


def _robustness_request(corruptions, severities, corruption_images):
    """(names, severities, images) checked, or None when no corruption is asked for."""
    if corruptions is None:
        return None
    from imagerec.data import corruptions as corruption_table

    if isinstance(corruption_images, bool) or not isinstance(corruption_images, int) or corruption_images < 0:
        raise UserError(f"`corruption_images` must be 0 (all) or more, got {corruption_images!r}")
    return (corruption_table.parse_names(corruptions), corruption_table.parse_severities(severities),
            corruption_images)


def _robustness(classifier, dataset, wanted, seed: int):
    if wanted is None:
        return None
    from imagerec.evaluation import robustness

    names, severities, count = wanted
    rows = robustness.pick_images(dataset.y_test, count, seed)
    return robustness.corruption_accuracy(classifier, dataset.x_test[rows], dataset.y_test[rows], names, severities,
                                          seed=seed)


def export_run(model, format_name: str, out=None, data_source=None, *, quantize=None, check_images: int = 256,
               calibration_images: int = 256, version: int | None = None, trust_model: bool = False,
               data_options=None):
    """`export.export_model` for the model at `model`, checked on the test split of its run's data (or
    `data_source`) and calibrated on its training split; `out` defaults to exports/model.<format>
    (a SavedModel: exports/model/<version>/)."""
    from imagerec.export import checked as export

    if version is not None and format_name != "savedmodel":
        raise UserError("`version` applies to the savedmodel format only")
    export.check_counts(check_images, calibration_images, version)  # before seconds of loading
    classifier, dataset = load_model_and_data(model, data_source, trust_model, data_options)
    out = out or export.default_path(format_name, quantize)
    return export.export_model(classifier, out, format_name, dataset, quantize=quantize, check_images=check_images,
                               calibration_images=calibration_images, version=version,
                               seed=(data_options or {}).get("seed", 0))


def predict_paths(model, paths, top_k: int = 5, trust_model: bool = False, explain_dir=None):
    """(predictions, errors) of `predict.predict_files` for image files and folders under `paths` (with
    `explain_dir`, a Grad-CAM picture and heatmap of each there); the paths are checked before the model is
    loaded."""
    if not layout.resolve_model(model).exists():
        raise UserError(f"model path does not exist: {layout.resolve_model(model)}")
    if explain_dir is not None and Path(explain_dir).exists() and not Path(explain_dir).is_dir():
        raise UserError(f"`explain` must be a folder, and {explain_dir} is a file")
    files = predict.find_image_files(paths)  # a wrong path fails before the model's seconds of loading
    classifier = loading.load_model(model, trust_model=trust_model)
    return predict.predict_files(classifier, files, top_k=top_k, explain_dir=explain_dir)  # not walked again


def serve_model(model, host: str = "127.0.0.1", port: int = 8500, name: str = "cifar10", limits=None,
                trust_model: bool = False, grpc_port: int | None = None) -> None:
    """Load `model` and serve it (`serve.server.run_server`) until interrupted, with TF Serving's gRPC API on
    `grpc_port` if given; the addresses are checked first."""
    try:
        from imagerec.serve import server
    except ImportError as error:  # a machine set up without them (pip install --no-deps, a JAX-only box)
        raise UserError(f"`imagerec serve` needs FastAPI, Starlette, uvicorn and h11, and {error.name} is not "
                        f"installed: pip install -e . (with its dependencies)") from None
    server.check_address_free(host, port)
    if grpc_port is not None:
        if grpc_port == port:
            raise UserError(f"`grpc_port` must differ from `port` ({port})")
        server.check_address_free(host, grpc_port, "grpc_port")
    classifier = loading.load_model(model, trust_model=trust_model)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(printable(f"imagerec: warning: listening on {host}: anyone who can reach this machine can use the "
                        f"model (there is no authentication)"), file=sys.stderr)
    print(printable(f"imagerec: serving {model} ({classifier.format}, {len(classifier.class_names)} classes) as "
                    f"'{name}' on http://{host}:{port}/"
                    + (f" and gRPC on {host}:{grpc_port}" if grpc_port is not None else "")), flush=True)
    server.run_server(classifier, host, port, name, limits, grpc_port)


def doctor_data(data_source, out_dir=None, *, recipe=None, folds: int = 5, model=None, seed: int = 0,
                trust_model: bool = False, views: bool = True, data_options=None):
    """`imagerec doctor`: `diagnosis.run.doctor` (its DoctorResult), with the default recipe when none is given
    and the data options' None values left out."""
    from imagerec.diagnosis import run

    options = {key: value for key, value in (data_options or {}).items() if value is not None}
    return run.doctor(data_source, out_dir, recipe=recipe or run.DEFAULT_RECIPE, folds=folds, model=model,
                      seed=seed, data_options=options, trust_model=trust_model, views=views)
