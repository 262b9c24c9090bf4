"""PreferenceSnapshot now lives in `feedback` (feedback 0004 took it over on the same table): point the
foreign keys there and drop the model from this app's state. State only: no table or column changes."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("training", "0001_initial"),
        ("feedback", "0004_preferencesnapshot_moves_here"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.AlterField(
                model_name="modelversion", name="snapshot",
                field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                        related_name="model_versions", to="feedback.preferencesnapshot"),
            ),
            migrations.AlterField(
                model_name="trainingrun", name="snapshot",
                field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                        related_name="training_runs", to="feedback.preferencesnapshot"),
            ),
            migrations.DeleteModel(name="PreferenceSnapshot"),
        ]),
    ]
