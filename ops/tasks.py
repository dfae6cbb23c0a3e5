from celery import Task, shared_task

from .services import heartbeat_process


@shared_task(bind=True, ignore_result=True)
def heartbeat_process_task(self: Task, *, heartbeat_id: int) -> None:
    heartbeat_process(heartbeat_id=heartbeat_id, worker=self.request.hostname or "")
