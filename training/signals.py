"""Signals of the training app.

`run_queued` is sent after the transaction that queued a run commits. The worker's entry points
(training/tasks.py) receive it and enqueue the job; the connection is made once, explicitly, in
TrainingConfig.ready. This keeps the imports one way: services (which queue runs) know nothing of the
tasks that execute them, as tasks → execution → runners → services.
"""

from django.dispatch import Signal

# Sent with: run_id (int).
run_queued = Signal()
