from django.urls import path

from jitaccess.slack import views

urlpatterns = [path("interactions", views.interactions, name="slack-interactions")]
