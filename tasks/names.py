"""Names the tasks, the deployments and the webhook share, in one Prefect-free module
(the webhook imports it without paying for Prefect)."""

#: The event the drift-check flow emits when the governor says trigger.
DRIFT_EVENT = "refit.drift.detected"
#: The deployment that listens for DRIFT_EVENT (declared in deployments/definitions.py).
RETRAIN_ON_DRIFT = "retrain-on-drift"
#: Its full name as the API knows it ("FLOW/DEPLOYMENT"; the flow is ``retrain``).
RETRAIN_ON_DRIFT_FULL_NAME = f"retrain/{RETRAIN_ON_DRIFT}"
#: The event the register step emits for a candidate the gate did not promote.
REJECTED_EVENT = "refit.model.rejected"
