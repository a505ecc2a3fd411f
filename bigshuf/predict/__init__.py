"""Post-processing of classifier predictions.

The pipeline, in files: ``formats`` (which format, where the vector and label are) ->
``reading`` (checked, streaming passes) -> the algorithms (``can``, ``tune``, ``priors``,
``reference``; ``thresholds``, ``multilabel``; ``metrics``) -> ``writing`` (rows back, atomic).
``can_command`` and ``threshold_command`` hold the two commands with their options objects;
``defaults`` holds every default and choice.
"""
