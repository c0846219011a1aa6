from django.urls import path

from catalog import views
from core.api import off_event_loop

urlpatterns = [
    path("search", off_event_loop(views.SearchView.as_view())),
    path("categories", views.CategoriesView.as_view()),
    path("trending", off_event_loop(views.TrendingView.as_view())),
    path("sync", views.SyncView.as_view()),
    path("sync/<int:job_id>", views.SyncJobView.as_view()),
    path("<path:model_id>/info", off_event_loop(views.ModelInfoView.as_view())),
    path("<path:model_id>/favorite", off_event_loop(views.FavoriteView.as_view())),
]
