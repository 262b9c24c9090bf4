"""Snapshots store their rows (`SnapshotRowChunk`) and `sha256` becomes the sha256 of those bytes.

An existing snapshot's sha256 (of its judgements' ids and rankings) moves to `judgements_sha256`; its rows are
stored, and its sha256 set to theirs, on its first read (`services.snapshots.materialise_legacy`).
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import F


def keep_judgement_hashes(apps, schema_editor):
    apps.get_model("feedback", "PreferenceSnapshot").objects.update(judgements_sha256=F("sha256"))


class Migration(migrations.Migration):

    dependencies = [
        ('feedback', '0009_foreign_keys_without_redundant_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='preferencesnapshot',
            name='judgements_sha256',
            field=models.CharField(blank=True, db_index=True, help_text="sha256 of its judgements' ids and rankings: the same judgements give the same value.", max_length=64),
        ),
        migrations.AddField(
            model_name='preferencesnapshot',
            name='rows_stored',
            field=models.BooleanField(default=False, help_text='Its rows are materialised (false only for snapshots made before rows were stored, until their first read stores them).'),
        ),
        migrations.AlterField(
            model_name='preferencesnapshot',
            name='sha256',
            field=models.CharField(db_index=True, help_text='sha256 of its rows as JSONL bytes: what a download returns, byte for byte.', max_length=64),
        ),
        migrations.CreateModel(
            name='SnapshotRowChunk',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('seq', models.PositiveIntegerField()),
                ('rows', models.PositiveIntegerField()),
                ('jsonl_gz', models.BinaryField()),
                ('snapshot', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='row_chunks', to='feedback.preferencesnapshot')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('snapshot', 'seq'), name='snapshot_row_chunk_seq')],
            },
        ),
        migrations.RunPython(keep_judgement_hashes, migrations.RunPython.noop),
    ]
