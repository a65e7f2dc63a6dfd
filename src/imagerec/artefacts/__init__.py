"""Artefacts: what a run leaves on disk, and the only way back in.

    layout        every file name of a run directory and an export folder; the one table of model formats
    rundir        settings, resume state, history, metrics; from an artefact to its run
    model_info    model.json (classes, input shape, architecture) and its limits
    manifest      SHA-256 manifests and the checked private copy a loader opens
    keras_archive a .keras zip checked before Keras opens it (bombs, absurd inputs)
    saving        writing the four model formats      loading   opening any of them safely as a `Classifier`
    classifier    `Classifier`: any model as uint8 images → probabilities

Nothing here trains or evaluates.
"""
