from django.contrib.admin.apps import AdminConfig


class VeilAdminConfig(AdminConfig):
    """django.contrib.admin, with `config.admin.VeilAdminSite` as its site."""

    default_site = "config.admin.VeilAdminSite"
