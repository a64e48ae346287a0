from django.apps import AppConfig


class JitaccessConfig(AppConfig):
    name = "jitaccess"
    verbose_name = "Just-in-time access"
