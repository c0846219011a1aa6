from django.urls import path

from llm_manager.api import pending_endpoint

urlpatterns = [
    path("search", pending_endpoint("model search", ("get",), "Search models")),
    path("categories", pending_endpoint("model categories", ("get",), "Model types per source")),
    path("trending", pending_endpoint("trending models", ("get",), "Trending models")),
    path("stats", pending_endpoint("model stats", ("get",), "Catalog statistics")),
    path("sync", pending_endpoint("model sync", ("post",), "Sync the catalog from the sources")),
    path("sync/<int:job_id>", pending_endpoint("model sync job", ("get",), "State of a sync job")),
    path("<path:model_id>/info", pending_endpoint("model info", ("get",), "Model details")),
    path("<path:model_id>/favorite", pending_endpoint("favorite", ("post", "delete"), "Favorite a model")),
]
