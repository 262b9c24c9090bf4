"""The moved PreferenceSnapshot gets this app's table name, a state and an error message.

Snapshots taken before files were tracked count as complete (they were used as such); new ones start
pending and become complete once their files are written whole (or at once when they have no files)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0004_preferencesnapshot_moves_here"),
        ("training", "0002_preferencesnapshot_moves_to_feedback"),
    ]

    operations = [
        migrations.AlterModelTable(name="preferencesnapshot", table=None),
        migrations.AddField(
            model_name="preferencesnapshot", name="state",
            field=models.CharField(choices=[("pending", "Pending: files being written"), ("complete", "Complete"),
                                            ("failed", "Failed: files not written")], default="complete", max_length=16),
        ),
        migrations.AlterField(
            model_name="preferencesnapshot", name="state",
            field=models.CharField(choices=[("pending", "Pending: files being written"), ("complete", "Complete"),
                                            ("failed", "Failed: files not written")], default="pending", max_length=16),
        ),
        migrations.AddField(
            model_name="preferencesnapshot", name="error",
            field=models.TextField(blank=True, help_text="Why writing its files failed."),
        ),
    ]
