"""AuditEvent, taken over from `feedback` (its table existed there as feedback_auditevent)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("feedback", "0003_auditevent_moves_to_core"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name="AuditEvent",
                fields=[
                    ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                    ("event_type", models.CharField(choices=[('project_created', 'Project created'), ('project_changed', 'Project settings changed'), ('member_added', 'Member added'), ('member_removed', 'Member removed'), ('prompts_imported', 'Prompts imported'), ('preferences_exported', 'Preferences exported'), ('gold_marked', 'Gold task marked'), ('task_adjudicated', 'Task adjudicated'), ('run_started', 'Training run started'), ('run_cancelled', 'Training run cancelled'), ('version_registered', 'Model version registered'), ('samples_published', 'Samples published'), ('policy_rolled_back', 'Policy rolled back')], max_length=40)),
                    ("target", models.CharField(blank=True, help_text="What was acted on, e.g. 'run:12'.", max_length=200)),
                    ("extra", models.JSONField(blank=True, default=dict)),
                    ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                    ("actor", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                                related_name="audit_events", to=settings.AUTH_USER_MODEL)),
                    ("project", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                                  related_name="audit_events", to="feedback.project")),
                ],
                options={"ordering": ["-created_at"], "db_table": "feedback_auditevent"},
            ),
        ]),
        migrations.AlterModelTable(name="auditevent", table=None),
    ]
