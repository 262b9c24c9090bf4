"""What each kind of TrainingRun does, one module per kind, between Django and `training.pipeline`.

A runner receives a `RunContext` (the run, its settings as their dataclass, callbacks for steps, logs and
cancellation, and its kind's gate), trains through the pipeline, writes through `training.services`, and
returns {"summary": …, "produced_version": …} (plus "state" and "error" when it did not succeed).
Which runner serves which kind is declared in `training.run_kinds`.
"""
