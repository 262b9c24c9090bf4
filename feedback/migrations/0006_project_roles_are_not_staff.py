"""Project roles no longer make a user Django staff, and the role groups carry no model permissions.

Before this change `add_member(role="admin")` set `is_staff` (project admins used the Django admin), and
the "Project admins"/"Reviewers" groups held global model permissions (which reach every project's rows).
The Django admin is now for superusers only: clear `is_staff` on every non-superuser and empty the role
groups' permissions. Superusers keep both flags. Not reversible in a meaningful way (no-op backwards)."""

from django.db import migrations

ROLE_GROUP_NAMES = ["Annotators", "Reviewers", "Project admins"]


def clear_staff_of_non_superusers(apps, schema_editor):
    User = apps.get_model("auth", "User")
    User.objects.filter(is_staff=True, is_superuser=False).update(is_staff=False)
    Group = apps.get_model("auth", "Group")
    for group in Group.objects.filter(name__in=ROLE_GROUP_NAMES):
        group.permissions.clear()


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0005_preferencesnapshot_table_and_state"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(clear_staff_of_non_superusers, migrations.RunPython.noop)]
