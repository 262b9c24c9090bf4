# Per-step metrics move from TrainingRun.metrics (a JSON list rewritten at every step) to a table of
# their own; the steps already logged are copied over before the column goes.

import django.db.models.deletion
from django.db import migrations, models


def copy_metrics(apps, schema_editor):
    TrainingRun = apps.get_model("training", "TrainingRun")
    TrainingRunMetric = apps.get_model("training", "TrainingRunMetric")
    for run_id, rows in TrainingRun.objects.exclude(metrics=[]).values_list("id", "metrics").iterator():
        by_step = {}
        for position, row in enumerate(rows or [], start=1):
            row = dict(row)
            step = row.pop("step", position)
            by_step.setdefault(int(step), {}).update(row)
        TrainingRunMetric.objects.bulk_create(
            [TrainingRunMetric(run_id=run_id, step=step, metrics=values) for step, values in by_step.items()]
        )


def copy_back(apps, schema_editor):
    TrainingRun = apps.get_model("training", "TrainingRun")
    TrainingRunMetric = apps.get_model("training", "TrainingRunMetric")
    rows = {}
    for row in TrainingRunMetric.objects.order_by("run_id", "step").iterator():
        rows.setdefault(row.run_id, []).append({"step": row.step, **row.metrics})
    for run_id, metrics in rows.items():
        TrainingRun.objects.filter(pk=run_id).update(metrics=metrics)


class Migration(migrations.Migration):

    dependencies = [
        ('training', '0002_preferencesnapshot_moves_to_feedback'),
    ]

    operations = [
        migrations.CreateModel(
            name='TrainingRunMetric',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('step', models.PositiveIntegerField()),
                ('metrics', models.JSONField(default=dict)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('run', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='step_metrics', to='training.trainingrun')),
            ],
            options={
                'ordering': ['run', 'step'],
                'constraints': [models.UniqueConstraint(fields=('run', 'step'), name='run_metric_unique_step')],
            },
        ),
        migrations.RunPython(copy_metrics, copy_back),
        migrations.RemoveField(
            model_name='trainingrun',
            name='metrics',
        ),
    ]
