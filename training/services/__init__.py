"""Every write of the training app: runs and their lifecycle (`runs`), the model registry (`registry`), the
retraining schedule (`schedule`) and published samples (`publishing`). Callers use `training.services.<name>`.

A run's life: queued → running → succeeded | failed | cancelled. The worker that executes it beats
a heartbeat; a run whose heartbeat stops (the worker was killed) is marked failed by
`fail_stale_runs`, so nothing stays "running" forever, and no ModelVersion is registered unless
its files were completely written first.

Imports go one way: tasks → execution → runners → services. Services queue a run by sending
`training.signals.run_queued` after commit; they never import the code that executes runs.
"""

from training.services.runs import (  # noqa: F401
    LOG_LIMIT_CHARS,
    RUN_ALREADY_FINISHED,
    RUN_JOB_TASK_PATH,
    WORKER_LOST,
    append_log,
    attach_snapshot,
    beat,
    fail_stale_runs,
    finish_run,
    json_safe,
    record_step,
    request_cancel,
    claim_run,
)
from training.services.scratch import remove_orphaned_scratch  # noqa: F401
from training.services.starting import start_training  # noqa: F401
from training.services.registry import (  # noqa: F401
    CANNOT_ACTIVATE_REJECTED,
    CANNOT_ACTIVATE_UNEVALUATED,
    NAME_THE_PROJECT,
    ONLY_POLICIES_ACTIVATE,
    OTHER_PROJECTS_POLICY,
    activate_policy,
    check_activatable,
    register_default_policy,
    register_version,
)
from training.services.schedule import (  # noqa: F401
    project_pairwise_agreement,
    retrain_if_due,
)
from training.services.publishing import (  # noqa: F401
    publish_prompt,
    publish_prompt_task,
    queue_demo_sampling,
    record_published,
)
from training.services.rounds import (  # noqa: F401
    ROUND_NOT_JUDGED,
    ROUND_OPEN,
    abandon_dpo_round,
    advance_dpo_round,
    end_round,
    finish_dpo_round,
    finish_judged_rounds,
    human_share_needed,
    open_round_for,
    record_round_sampled,
    start_dpo_round,
)
