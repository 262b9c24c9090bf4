"""Pages to watch and drive training: the registry with lineage, the settings form that starts a run, and a live
run page (htmx polling, Chart.js plots)."""

from training.views.pages import registry, run_cancel, run_detail, run_live
from training.views.rounds import dpo_round_abandon, dpo_round_advance
from training.views.start import run_start

__all__ = ["dpo_round_abandon", "dpo_round_advance", "registry", "run_cancel", "run_detail", "run_live", "run_start"]
