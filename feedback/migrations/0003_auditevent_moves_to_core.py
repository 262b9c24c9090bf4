"""AuditEvent moves to the `core` app (the audit trail is shared by every app). State only: the table
stays where it is here; core's first migration takes it over and renames it."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("feedback", "0002_initial")]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="AuditEvent")]),
    ]
