"""PreferenceSnapshot moves from `training` to `feedback`, state only: the model starts here on the table
it already has (training_preferencesnapshot); training's 0002 then points its foreign keys here and drops
its own copy from the state, and 0005 renames the table and adds the snapshot's state."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("feedback", "0003_auditevent_moves_to_core"),
        ("training", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name="PreferenceSnapshot",
                fields=[
                    ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                    ("judgement_ids", models.JSONField(default=list, help_text="The judgements it holds, as runs [first id, last id].")),
                    ("filters", models.JSONField(blank=True, default=dict)),
                    ("counts", models.JSONField(blank=True, default=dict, help_text="pairs, train/test pairs, prompts, judgements …")),
                    ("agreement", models.FloatField(blank=True, null=True)),
                    ("sha256", models.CharField(db_index=True, max_length=64)),
                    ("path", models.CharField(blank=True, help_text="Where its export files live.", max_length=500)),
                    ("created_at", models.DateTimeField(auto_now_add=True)),
                    ("created_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                                     to=settings.AUTH_USER_MODEL)),
                    ("project", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="snapshots",
                                                  to="feedback.project")),
                ],
                options={"ordering": ["-created_at"], "db_table": "training_preferencesnapshot"},
            ),
        ]),
    ]
