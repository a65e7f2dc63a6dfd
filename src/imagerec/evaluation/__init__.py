"""Evaluation: numbers from a model's probabilities, the report that draws them, and predictions for files.

    evaluate    accuracy, loss, per-class and calibration numbers from probabilities (returns data only)
    report      every figure and report.html from numbers it is given (reads no run file)
    predict     image files found and decoded, top-k labels, the printed table

Nothing here loads a model or trains one: each takes a `Classifier` (or its probabilities).
"""
