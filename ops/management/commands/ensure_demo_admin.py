import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the demo superuser 'admin' once; print its password the time it is created."

    def handle(self, *args: Any, **options: Any) -> None:
        password_file = Path(settings.DATA_DIR) / "demo-admin-password"
        user_model = get_user_model()
        if user_model.objects.filter(username="admin").exists() and password_file.exists():
            self.stdout.write(f"Demo admin: user 'admin', password in {password_file}")
            return
        password = secrets.token_urlsafe(12)
        user = user_model.objects.filter(username="admin").first() or user_model(username="admin")
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        password_file.parent.mkdir(parents=True, exist_ok=True)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        self.stdout.write(f"Demo admin created: user 'admin', password '{password}'")
        self.stdout.write(f"(kept in {password_file})")
