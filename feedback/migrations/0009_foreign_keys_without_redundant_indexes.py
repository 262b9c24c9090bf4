"""Drop three foreign-key indexes that a unique index leading with the same column already serves: prompt.project_id
(prompt_unique_content), completion.prompt_id (completion_unique) and the task column of the task–completion table
(its unique (task, completion) index). Every import inserted into them for nothing. comparisontask.project_id keeps
its index: on SQLite it is what pages a project's tasks in id order (task_browse_status would need a sort).

The task–completion table Django made for `ComparisonTask.completions` becomes a declared model (same table, same
columns, same unique index), so its task column can say `db_index=False`. The indexes are dropped by the names the
schema holds, not by AlterField, which on SQLite would copy each whole table.
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Index

FK_INDEXES = [("prompt", "project"), ("completion", "prompt"), ("taskcompletion", "comparisontask")]


def _fields(apps):
    for model_name, field_name in FK_INDEXES:
        model = apps.get_model("feedback", model_name)
        yield model, model._meta.get_field(field_name)


def drop_fk_indexes(apps, schema_editor):
    for model, field in _fields(apps):
        # The single-column, non-unique index Django made for the key (what AlterField(db_index=False) drops).
        for name in schema_editor._constraint_names(model, [field.column], index=True, unique=False,
                                                    primary_key=False, type_=Index.suffix):
            schema_editor.execute(schema_editor._delete_index_sql(model, name))


def create_fk_indexes(apps, schema_editor):
    for model, field in _fields(apps):
        schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))


class Migration(migrations.Migration):

    dependencies = [
        ('feedback', '0008_task_browser_indexes'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.AlterField(
                model_name='completion',
                name='prompt',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='completions', to='feedback.prompt'),
            ),
            migrations.AlterField(
                model_name='prompt',
                name='project',
                field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='prompts', to='feedback.project'),
            ),
            migrations.CreateModel(
                name='TaskCompletion',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('comparisontask', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='feedback.comparisontask')),
                    ('completion', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='feedback.completion')),
                ],
                options={
                    'db_table': 'feedback_comparisontask_completions',
                    'unique_together': {('comparisontask', 'completion')},
                },
            ),
            migrations.AlterField(
                model_name='comparisontask',
                name='completions',
                field=models.ManyToManyField(related_name='tasks', through='feedback.TaskCompletion', to='feedback.completion'),
            ),
        ]),
        migrations.RunPython(drop_fk_indexes, create_fk_indexes),
    ]
