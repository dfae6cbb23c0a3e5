"""The operator's status page. It reads every app (queues and workers from ops, the inference API, failed
documents, retrievers), so it lives with the URLconf at the top of the project, not in ops, which the apps
themselves import."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ingest.selectors import document_failures_for_user
from ops import inference
from ops.selectors import audit_events_recent, queue_depths, workers_list
from retrievers.selectors import retriever_list


@staff_member_required
def status(request: HttpRequest) -> HttpResponse:
    """The operator's page: queues, workers, the inference API and the last failures."""
    context = {
        "queues": queue_depths(),
        "workers": workers_list(),
        "inference": inference.health(),
        "failed_documents": document_failures_for_user(user=request.user),
        "audit_events": audit_events_recent() if request.user.has_perm("ops.view_auditevent") else None,
        "retrievers": retriever_list().exclude(status="registered"),
    }
    return render(request, "ops/status.html", context)
