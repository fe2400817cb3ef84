"""The ModelDeployment controller: kopf handlers, typed spec, child builders, registry
resolution and watching, rollout analysis, reconcile, status, drift and retraining."""
