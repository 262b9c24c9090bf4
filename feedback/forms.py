"""Forms of the project admin's pages. They validate and show errors; every write goes through services."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model

from feedback import importing
from feedback.models import PROJECT_SETTING_RANGES, Membership, Project
from feedback.pages.fields import AsciiFloatField, AsciiIntegerField

SETTINGS_FIELDS = ["name", "instructions", "completions_per_task", "overlap", "max_overlap",
                   "agreement_threshold", "lease_seconds", "gold_rate"]
NO_SUCH_USER = "No user is called {username!r}. Ask a superuser to create the account first."
ALREADY_MEMBER = "{username} is already a member; change their role in the list below."


class ProjectSettingsForm(forms.ModelForm):
    """Every setting of a project, with the model's help texts and validators (the slug never changes). Numbers
    are ASCII digits only ("٣" and "３" are refused, as by the API), finite, within the model's stated range
    (`PROJECT_SETTING_RANGES`, also the inputs' min and max)."""

    class Meta:
        model = Project
        fields = SETTINGS_FIELDS
        widgets = {"instructions": forms.Textarea(attrs={"rows": 6})}
        field_classes = {name: AsciiFloatField if isinstance(lo, float) else AsciiIntegerField
                         for name, (lo, _) in PROJECT_SETTING_RANGES.items()}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, (lo, hi) in PROJECT_SETTING_RANGES.items():
            if name in self.fields:
                self.fields[name].widget.attrs.update(min=lo, max=hi)


class ProjectCreateForm(ProjectSettingsForm):
    class Meta(ProjectSettingsForm.Meta):
        fields = ["slug", *SETTINGS_FIELDS]
        help_texts = {"slug": "Short address of the project (letters, digits, - and _); it cannot change later."}


class ImportForm(forms.Form):
    file = forms.FileField(help_text="JSONL, CSV or Parquet; all rows are imported, or none.")
    format = forms.ChoiceField(
        required=False, choices=[("", "from the file name")] + [(f, f.upper()) for f in importing.FORMATS],
        help_text="Leave as is for .jsonl, .csv and .parquet files.",
    )

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("file")
        if upload is not None and not cleaned.get("format"):
            cleaned["format"] = importing.detect_format(upload.name)
            if not cleaned["format"]:
                self.add_error("format", "Choose the format: the file name does not end in .jsonl, .csv or .parquet.")
        return cleaned


class AddMemberForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="An existing account's username.")
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.ANNOTATOR)

    def __init__(self, *args, project: Project, **kwargs):
        self.project = project
        super().__init__(*args, **kwargs)

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        if not get_user_model().objects.filter(username=username).exists():
            raise forms.ValidationError(NO_SUCH_USER.format(username=username))
        if Membership.objects.filter(project=self.project, user__username=username).exists():
            raise forms.ValidationError(ALREADY_MEMBER.format(username=username))
        return username


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)
