from django.urls import path

from . import views

app_name = "search"
urlpatterns = [
    path("", views.home, name="home"),
    path("conversations/<int:conversation_id>/", views.conversation_detail, name="conversation"),
    path("ask/", views.ask, name="ask"),
    path("answers/<int:message_id>/stream/", views.answer_stream, name="answer_stream"),
    path("answers/<int:message_id>/feedback/", views.feedback, name="feedback"),
    path("passages/<int:chunk_id>/", views.passage, name="passage"),
]
