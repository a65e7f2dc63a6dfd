"""What a finished run writes: the inference model and its scores on the test split, the model files (every
format), the history, the curves, metrics.json and the report. Data flows one way: numbers come from
`evaluation.evaluate`, figures from `evaluation.report`, files go where `layout` says."""

import dataclasses
import time

import numpy as np

from imagerec import machine
from imagerec.artefacts import layout, model_info, rundir, saving
from imagerec.artefacts.classifier import Classifier
from imagerec.evaluation import evaluate
from imagerec.evaluation import report as report_pages
from imagerec.models import inference
from imagerec.training import calibration, class_weights


@dataclasses.dataclass
class RunResult:
    run_dir: object  # pathlib.Path; None on a multi-worker run's non-chief workers
    model: Classifier  # the saved model, as `load_model` would return it
    history: list  # per-epoch records, as in history.json
    metrics: dict  # as in metrics.json
    test_probabilities: np.ndarray = None  # (N, K) of the saved model on the test split
    report: dict | None = None  # the report's numbers (report.json) and its page ("path"), when one was written


@dataclasses.dataclass(frozen=True)
class Trained:
    """A fitted net and what its fit recorded."""

    net: object  # the trained keras.Model, float32
    warm_start: dict | None  # warmstart.apply's record, or None
    started_s: float  # time.perf_counter() when fitting began
    train_wall_s: float  # seconds of fitting


def finish(run_dir, dataset, plan, trained: Trained) -> RunResult:
    """Score the trained net on the test split and write the model files, history, curves and metrics."""
    recipe = plan.recipe
    model, calibrated = _calibrated_model(trained.net, recipe, plan.calibration, plan.calibration_note,
                                         dataset.class_names)
    classifier = Classifier.from_keras(model, dataset.class_names, layout.model_path(run_dir))
    test_probabilities = classifier.predict_proba_selective(dataset.x_test)  # as `imagerec evaluate` scores it
    test = evaluate.score(test_probabilities, dataset.y_test, dataset.class_names)
    if calibrated["temperature"] is not None:
        before = evaluate.apply_temperature(test_probabilities, 1 / calibrated["temperature"])
        calibrated.update(test_ece_before=_ece(before, dataset.y_test), test_ece_after=_ece(test_probabilities,
                                                                                            dataset.y_test))
    info = model_info.ModelInfo(tuple(dataset.class_names), tuple(model.input_shape[1:]), recipe.model,
                                recipe.test_time_augmentation, temperature=calibrated.get("temperature"))
    files = saving.save_model_files(model, run_dir, info)
    history = rundir.read_history_csv(run_dir, recipe.phase)
    rundir.write_history(run_dir, history)
    for metric in layout.CURVE_FILES:
        report_pages.plot_curves(history, metric, layout.curve_path(run_dir, metric))
    metrics = {**_metrics(test, dataset, plan, trained, model, files), "init_from": trained.warm_start,
               "calibration": calibrated}
    if plan.excluded is not None:
        rundir.write_excluded(run_dir, plan.excluded["rows"])
        metrics["excluded"] = {key: value for key, value in plan.excluded.items() if key != "rows"}
    rundir.write_metrics(run_dir, metrics)
    return RunResult(run_dir, classifier, history, metrics, test_probabilities)


def _calibrated_model(net, recipe, held_out, note, class_names) -> tuple:
    """(the inference model, with the temperature fitted on the held-out images when there are any; what
    metrics.json records about it)."""
    model = inference.inference_model(net, test_time_augmentation=recipe.test_time_augmentation)
    if held_out is None:
        return model, {"temperature": None, "why_not": note}
    probabilities = Classifier.from_keras(model, class_names).predict_proba(held_out.images)
    temperature = calibration.fit_temperature(probabilities, held_out.labels)
    calibrated = inference.inference_model(net, recipe.test_time_augmentation, temperature=temperature)
    return calibrated, {"temperature": temperature, **held_out.record(),
                        "held_out_ece_before": _ece(probabilities, held_out.labels),
                        "held_out_ece_after": _ece(evaluate.apply_temperature(probabilities, temperature),
                                                   held_out.labels)}


def _ece(probabilities, labels) -> float:
    correct = probabilities.argmax(axis=1) == labels
    return round(evaluate.calibration_table(probabilities.max(axis=1), correct)["expected_calibration_error"], 6)


def write_report(result: RunResult, dataset) -> dict:
    """The report's numbers, and its page under "path"."""
    out_dir = layout.report_dir(result.run_dir)
    numbers = report_pages.write_report(out_dir, result.model, dataset.x_test, dataset.y_test, dataset=dataset,
                                        history=result.history, run=result.metrics,
                                        probabilities=result.test_probabilities)
    return {**numbers, "path": str(out_dir / report_pages.REPORT_HTML)}


def _class_weights_record(dataset, recipe):
    weights = class_weights.class_weights(dataset.y_train, dataset.num_classes, recipe.class_weight)
    return None if weights is None else dict(zip(dataset.class_names, weights.round(4).tolist()))


def _metrics(test, dataset, plan, trained: Trained, model, files) -> dict:
    recipe = plan.recipe
    return {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "test_balanced_accuracy": test["balanced_accuracy"],  # mean per-class accuracy: honest on skewed classes
        "per_class_accuracy": test["per_class_accuracy"],
        "class_names": list(dataset.class_names),
        "data": dataset.summary(),
        "recipe": dataclasses.asdict(recipe),
        "seed": plan.seed,
        "validation": plan.validation,
        "class_weights": _class_weights_record(dataset, recipe),
        "model": {"name": recipe.model, "parameters": inference.count_params(model),
                  "forward_flops_per_image": inference.forward_flops(model),  # as saved (with any test-time views)
                  "net_forward_flops_per_image": inference.forward_flops(trained.net)},  # one view, as trained
        "files": files,
        "train_wall_s": round(trained.train_wall_s, 2),
        "wall_s": round(time.perf_counter() - trained.started_s, 2),
        "versions": machine.versions(),
    }
