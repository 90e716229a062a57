"""Image files of the command line: ``portraitsr upscale`` and ``restore`` in-process (the models
run here) or sent to a running service (``--url``), outputs named alike, and ``--compare`` strips."""
