"""Training: a recipe run on a dataset into a run directory.

    run          `train(data, recipe, run_dir)` → `RunResult`: checks, plan, fit, score, save, report
    fitting      the net built under the strategy and precision, warm-started, handed to its trainer
    progress     a line every ~30 s inside an epoch when the output is a log, not a terminal
    outcome      what a finished run writes: the model files, history, curves, metrics, report
    calibration  the temperature, fitted on held-out images (validation, else a 2% training slice)
    recipes      frozen presets: every number of a run, and each recipe type's facts (trainer, families, ...)
    precision    mixed precision: "auto", hardware checks, Keras' dtype policy
    context      `FitContext`: what every trainer is given
    seed, airbench, finetune   one trainer per recipe type: `fit(net, dataset, recipe, context)`
    augment, optim, batches, class_weights, distribute, warmstart   their pieces

A new training method is one recipe type in `recipes` plus one trainer module (named by its `trainer`).
"""
