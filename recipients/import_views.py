"""Pages of list imports: upload, map and start, watch the progress, download rejected rows;
the directory sync page and the export of a list's members."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from mlm.forms import bound, submit
from mlm.models import Role
from mlm.scoping import UnitRequest, unit_view
from recipients import import_services
from recipients.import_forms import ImportOptionsForm, ImportRereadForm, ImportUploadForm
from recipients.importing.limits import ImportFileError
from recipients.importing.reading import preview as read_preview
from recipients.models import ImportJob, ImportStatus, RecipientList


def _list(request: UnitRequest, code: UUID) -> RecipientList:
    return get_object_or_404(RecipientList.objects.for_unit(request.unit), code=code)


def _job(request: UnitRequest, list_code: UUID, code: UUID) -> ImportJob:
    jobs = ImportJob.objects.for_unit(request.unit).select_related("recipient_list", "unit")
    return get_object_or_404(jobs, recipient_list__code=list_code, code=code)


def _upload(request: UnitRequest, list_code: UUID, *, sync: bool) -> HttpResponse:
    recipient_list = _list(request, list_code)
    form = ImportUploadForm(request.POST or None, request.FILES or None)
    made = submit(
        form,
        lambda data: import_services.import_upload(
            recipient_list=recipient_list,
            upload=data["file"],
            encoding=data["encoding"],
            delimiter=data["delimiter"],
            sync=sync,
            by=request.user,
        ),
    )
    if made is not None:
        return redirect("import_job", request.unit.slug, recipient_list.code, made[0].code)
    context = {"list": recipient_list, "form": form, "sync": sync}
    return render(request, "imports/upload.html", context)


@unit_view(Role.EDITOR)
def import_upload(request: UnitRequest, list_code: UUID) -> HttpResponse:
    return _upload(request, list_code, sync=False)


@unit_view(Role.ADMIN)
def import_sync(request: UnitRequest, list_code: UUID) -> HttpResponse:
    return _upload(request, list_code, sync=True)


@unit_view(Role.EDITOR)
def import_job(request: UnitRequest, list_code: UUID, job_code: UUID) -> HttpResponse:
    job = _job(request, list_code, job_code)
    if job.status != ImportStatus.UPLOADED:
        template = "imports/_job_status.html" if request.htmx else "imports/job.html"
        return render(request, template, {"job": job, "list": job.recipient_list})
    form = bound(ImportOptionsForm, request, job=job)
    started = submit(
        form, lambda _data: import_services.import_start(job=job, by=request.user, **form.choices())
    )
    if started is not None:
        return redirect("import_job", request.unit.slug, list_code, job.code)
    try:
        preview = read_preview(job)
    except ImportFileError as error:  # read at upload; now past the preview's bound
        preview = None
        messages.error(request, f"The preview cannot be shown: {error}")
    context = {
        "job": job,
        "list": job.recipient_list,
        "form": form,
        "reread_form": ImportRereadForm(job=job),
        "preview": preview,
    }
    return render(request, "imports/job.html", context)


@unit_view(Role.EDITOR)
@require_POST
def import_reread(request: UnitRequest, list_code: UUID, job_code: UUID) -> HttpResponse:
    job = _job(request, list_code, job_code)
    form = ImportRereadForm(request.POST, job=job)
    if submit(form, lambda data: import_services.import_reread(job=job, **data)) is None:
        errors = [e for errors in form.errors.values() for e in errors]
        messages.error(request, " ".join(errors) or "The file could not be read again.")
    return redirect("import_job", request.unit.slug, list_code, job.code)


@unit_view(Role.EDITOR)
def import_rejected(request: UnitRequest, list_code: UUID, job_code: UUID) -> HttpResponse:
    job = _job(request, list_code, job_code)
    if not job.rejected_file:
        raise Http404("This import rejected no row.")
    stem = slugify(job.file_name.rsplit(".", 1)[0]) or "import"
    return FileResponse(
        default_storage.open(job.rejected_file.name, "rb"),
        as_attachment=True,
        filename=f"rejected-rows-{stem}.csv",
        content_type="text/csv; charset=utf-8",
    )


@unit_view(Role.EDITOR)
def import_list(request: UnitRequest, list_code: UUID) -> HttpResponse:
    recipient_list = _list(request, list_code)
    jobs = ImportJob.objects.for_unit(request.unit).filter(recipient_list=recipient_list)
    context = {"list": recipient_list, "jobs": jobs.prefetch_related("dm_types")[:200]}
    return render(request, "imports/job_list.html", context)


@unit_view(Role.EDITOR)
def list_export(request: UnitRequest, list_code: UUID) -> HttpResponse:
    recipient_list = _list(request, list_code)
    lines = import_services.list_export(recipient_list=recipient_list, by=request.user)
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    filename = f"{slugify(recipient_list.name) or 'list'}-members.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
