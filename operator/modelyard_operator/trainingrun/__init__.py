"""The TrainingRun controller: kopf handlers, typed spec, Job builders, reconcile and status."""
