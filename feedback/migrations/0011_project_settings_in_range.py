"""Project settings have a stated range (feedback.models.PROJECT_SETTING_RANGES) that the database enforces too.

A row stored out of range before (a NaN gold rate through `create_project --gold-rate nan`, which every Min/Max
validator let through) is brought to its nearest bound first (NaN to the field's default), so the constraints
can be added on any existing database."""

import math


import core.parsing
import django.core.validators
from django.conf import settings
from django.db import migrations, models


# The ranges as they were when this migration was written (a migration never reads the current models).
RANGES = {
    "completions_per_task": (2, 4, 2), "overlap": (1, 50, 3), "max_overlap": (1, 50, None),
    "agreement_threshold": (0.0, 1.0, 0.75), "lease_seconds": (30, 86400, 600), "gold_rate": (0.0, 1.0, 0.0),
}


def bring_settings_into_range(apps, schema_editor):
    Project = apps.get_model("feedback", "Project")
    for project in Project.objects.all():
        changed = []
        for name, (lo, hi, default) in RANGES.items():
            value = getattr(project, name)
            if value is None:
                continue
            fixed = default if isinstance(value, float) and math.isnan(value) else min(max(value, lo), hi)
            if fixed != value:
                setattr(project, name, fixed)
                changed.append(name)
        if changed:
            project.save(update_fields=changed)


class Migration(migrations.Migration):

    dependencies = [
        ('feedback', '0010_snapshot_rows_materialised'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(bring_settings_into_range, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='project',
            name='agreement_threshold',
            field=models.FloatField(default=0.75, help_text='Adaptive overlap: below this mean pair agreement a task asks for another judgement.', validators=[django.core.validators.MinValueValidator(0.0), django.core.validators.MaxValueValidator(1.0), core.parsing.validate_finite]),
        ),
        migrations.AlterField(
            model_name='project',
            name='gold_rate',
            field=models.FloatField(default=0.0, help_text='Share of served tasks that are gold tasks with a known answer.', validators=[django.core.validators.MinValueValidator(0.0), django.core.validators.MaxValueValidator(1.0), core.parsing.validate_finite]),
        ),
        migrations.AddConstraint(
            model_name='project',
            constraint=models.CheckConstraint(condition=models.Q(('completions_per_task__gte', 2), ('completions_per_task__lte', 4)), name='project_completions_per_task_in_range'),
        ),
        migrations.AddConstraint(
            model_name='project',
            constraint=models.CheckConstraint(condition=models.Q(('overlap__gte', 1), ('overlap__lte', 50)), name='project_overlap_in_range'),
        ),
        migrations.AddConstraint(
            model_name='project',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('max_overlap__gte', 1), ('max_overlap__lte', 50)), ('max_overlap__isnull', True), _connector='OR'), name='project_max_overlap_in_range'),
        ),
        migrations.AddConstraint(
            model_name='project',
            constraint=models.CheckConstraint(condition=models.Q(('agreement_threshold__gte', 0.0), ('agreement_threshold__lte', 1.0)), name='project_agreement_threshold_in_range'),
        ),
        migrations.AddConstraint(
            model_name='project',
            constraint=models.CheckConstraint(condition=models.Q(('lease_seconds__gte', 30), ('lease_seconds__lte', 86400)), name='project_lease_seconds_in_range'),
        ),
        migrations.AddConstraint(
            model_name='project',
            constraint=models.CheckConstraint(condition=models.Q(('gold_rate__gte', 0.0), ('gold_rate__lte', 1.0)), name='project_gold_rate_in_range'),
        ),
    ]
