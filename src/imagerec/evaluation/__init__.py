"""Evaluation: numbers from a model's probabilities, the report that draws them, and predictions for files.

    evaluate    accuracy, loss, per-class and calibration numbers from probabilities (returns data only)
    report      every figure and report.html from numbers it is given (reads no run file); `report_html`
                the page, its sections in the order a user asks
    robustness  accuracy on corrupted copies of the test images, CIFAR-10-C's mean beside the clean figure
    explain     Grad-CAM heatmaps drawn over images: PNG files, arrays, data URLs
    predict     image files found and decoded, top-k labels, the printed table

Nothing here loads a model or trains one: each takes a `Classifier` (or its probabilities).
"""
