from django.urls import path

from jitaccess.slack import views

# One endpoint, checked one way; Slack is given three URLs (slack-app-manifest.yml) for its three
# settings: interactivity, the slash command and the options load URL.
urlpatterns = [
    path("interactions", views.interactions, name="slack-interactions"),
    path("commands", views.interactions, name="slack-commands"),
    path("options", views.interactions, name="slack-options"),
]
