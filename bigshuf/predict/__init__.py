"""Post-processing of classifier predictions.

The pipeline, in files: ``formats`` (which format, where the vector and label are) ->
``reading`` (checked, streaming passes) -> the algorithms (``can``, ``tune``, ``priors``,
``reference``; ``thresholds``, ``multilabel``; ``metrics``, one ``Metric`` object each) ->
``writing`` (rows back, atomic). ``can_command`` and ``threshold_command`` hold the two commands;
``options`` their options objects, ``budget`` what ``--memory`` allows, ``safety`` when a tuned
setting is kept, ``reports`` what they return; ``defaults`` holds every default and choice.
This package never imports ``bigshuf.shuffler`` (tests/test_predict_api.py checks it).
"""
