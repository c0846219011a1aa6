from django.urls import path

from llm_manager.api import pending_endpoint

urlpatterns = [
    path("api/chat/<str:deployment_id>", pending_endpoint("chat", ("post",), "Chat with a deployment")),
    path("api/completions/<str:deployment_id>", pending_endpoint("completions", ("post",), "Text completion")),
    path("v1/models", pending_endpoint("openai models", ("get",), "OpenAI-compatible model list")),
    path("v1/chat/completions", pending_endpoint("openai chat", ("post",), "OpenAI-compatible chat")),
    path("v1/completions", pending_endpoint("openai completions", ("post",), "OpenAI-compatible completions")),
]
