from django.urls import path

from inference import views

urlpatterns = [
    path("api/chat/<str:deployment_id>", views.chat),
    path("api/completions/<str:deployment_id>", views.completions),
    path("api/embeddings/<str:deployment_id>", views.embeddings),
    path("api/usage", views.UsageView.as_view()),
    path("v1/models", views.openai_models),
    path("v1/chat/completions", views.openai_chat),
    path("v1/completions", views.openai_completions),
    path("v1/embeddings", views.openai_embeddings),
]
