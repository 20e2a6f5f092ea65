"""The university dashboard's Django backend, written the way that deployment writes it, for
tests/browser/clerk.test.mjs: one file, run as `python dashboard.py PORT`.

- `POST /webhooks/clerk/`: Clerk's webhooks, verified with svix's `Webhook(secret).verify`, keep
  the `Student` table in step (`user.created` / `user.updated` upsert the row, role included,
  `user.deleted` removes it). A replayed `svix-id` is acknowledged and not applied twice.
- `GET /api/dashboard/`: a Django REST framework view behind an authentication class that hands
  the `Authorization: Bearer` token to clerk-backend-api's `authenticate_request` (networkless:
  `jwt_key` = the instance's PEM, `authorized_parties` = the React app's origin). It serves the
  signed-in student's dashboard: the synced row and the role the token carries.
- `POST /api/roles/`: what the deployment's staff page does, through the Clerk Backend API SDK
  (`users.update_metadata`, `public_metadata.role`). Staff only: the caller's token must carry the
  `staff` role, or the request must present the staff bootstrap key, as the deployment's
  first-admin script does.
- `GET /webhooks/clerk/users/`: the table as JSON, for the test to read.

Environment: CLERK_WEBHOOK_SIGNING_SECRET, CLERK_JWT_KEY (PEM), CLERK_AUTHORIZED_PARTIES
(comma-separated), CLERK_SECRET_KEY and CLERK_API_URL (the Backend API, `…/v1`),
DASHBOARD_STAFF_KEY. Prints `ready` once it listens.
"""

import hmac
import json
import os
import sys

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="dashboard-test-only",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "UNAUTHENTICATED_USER": None,
    },
    CLERK_WEBHOOK_SIGNING_SECRET=os.environ["CLERK_WEBHOOK_SIGNING_SECRET"],
    CLERK_JWT_KEY=os.environ["CLERK_JWT_KEY"],
    CLERK_AUTHORIZED_PARTIES=os.environ["CLERK_AUTHORIZED_PARTIES"].split(","),
    CLERK_SECRET_KEY=os.environ["CLERK_SECRET_KEY"],
    CLERK_API_URL=os.environ["CLERK_API_URL"],
    DASHBOARD_STAFF_KEY=os.environ["DASHBOARD_STAFF_KEY"],
)
django.setup()

import httpx  # noqa: E402
from clerk_backend_api import Clerk  # noqa: E402
from clerk_backend_api.security import authenticate_request  # noqa: E402
from clerk_backend_api.security.types import AuthenticateRequestOptions  # noqa: E402
from django.db import models, transaction  # noqa: E402
from django.http import HttpResponseBadRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.views.decorators.http import require_GET, require_POST  # noqa: E402
from rest_framework import authentication, exceptions  # noqa: E402
from rest_framework.permissions import IsAuthenticated  # noqa: E402
from rest_framework.decorators import api_view, authentication_classes, permission_classes  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from svix.webhooks import Webhook, WebhookVerificationError  # noqa: E402


class Student(models.Model):
    clerk_id = models.CharField(max_length=64, unique=True)
    email = models.CharField(max_length=320, null=True)
    first_name = models.CharField(max_length=200, null=True)
    last_name = models.CharField(max_length=200, null=True)
    role = models.CharField(max_length=32, null=True)

    class Meta:
        app_label = "dashboard"


class ProcessedWebhook(models.Model):
    svix_id = models.CharField(max_length=64, primary_key=True)
    type = models.CharField(max_length=64)

    class Meta:
        app_label = "dashboard"


class ClerkUser:
    """`request.user` for a verified session token: the token's claims and the synced row."""

    is_authenticated = True

    def __init__(self, claims: dict):
        self.claims = claims
        self.clerk_id = claims["sub"]
        self.student = Student.objects.filter(clerk_id=self.clerk_id).first()


class ClerkAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        state = authenticate_request(
            httpx.Request(request.method, request.build_absolute_uri(), headers={"Authorization": header}),
            AuthenticateRequestOptions(
                jwt_key=settings.CLERK_JWT_KEY, authorized_parties=settings.CLERK_AUTHORIZED_PARTIES
            ),
        )
        if not state.is_signed_in:
            raise exceptions.AuthenticationFailed(f"session token refused: {state.reason}")
        return ClerkUser(state.payload), state.payload

    def authenticate_header(self, request):
        return "Bearer"


@api_view(["GET"])
@authentication_classes([ClerkAuthentication])
@permission_classes([IsAuthenticated])
def dashboard(request):
    student = request.user.student
    return Response(
        {
            "clerk_id": request.user.clerk_id,
            "session": request.auth["sid"],
            "token_role": request.auth.get("role"),
            "student": None
            if student is None
            else {"email": student.email, "first_name": student.first_name, "role": student.role},
            "courses": ["CS101 Programming", "MA201 Linear algebra"] if student else [],
        }
    )


class StaffKeyOrToken(authentication.BaseAuthentication):
    def authenticate(self, request):
        key = request.META.get("HTTP_X_STAFF_KEY")
        if key is None:
            return ClerkAuthentication().authenticate(request)
        if not hmac.compare_digest(key.encode(), settings.DASHBOARD_STAFF_KEY.encode()):
            raise exceptions.AuthenticationFailed("wrong staff key")
        return ClerkUser({"sub": "staff", "role": "staff"}), None


@api_view(["POST"])
@authentication_classes([StaffKeyOrToken])
@permission_classes([])
def set_role(request):
    if request.user is None or request.user.claims.get("role") != "staff":
        raise exceptions.PermissionDenied("staff only")
    with Clerk(bearer_auth=settings.CLERK_SECRET_KEY, server_url=settings.CLERK_API_URL) as clerk:
        user = clerk.users.update_metadata(
            user_id=request.data["user_id"], public_metadata={"role": request.data["role"]}
        )
    return Response({"id": user.id, "public_metadata": user.public_metadata})


@csrf_exempt
@require_POST
def clerk_webhook(request):
    headers = {h: request.headers.get(h, "") for h in ("svix-id", "svix-timestamp", "svix-signature")}
    try:
        Webhook(settings.CLERK_WEBHOOK_SIGNING_SECRET).verify(request.body, headers)
    except WebhookVerificationError as e:
        return HttpResponseBadRequest(f"could not verify webhook: {e}")
    event = json.loads(request.body)
    data = event["data"]
    with transaction.atomic():
        _, fresh = ProcessedWebhook.objects.get_or_create(svix_id=headers["svix-id"], defaults={"type": event["type"]})
        if not fresh:
            return JsonResponse({"success": True, "duplicate": True})
        if event["type"] in ("user.created", "user.updated"):
            primary = next(
                (e["email_address"] for e in data["email_addresses"] if e["id"] == data["primary_email_address_id"]),
                None,
            )
            Student.objects.update_or_create(
                clerk_id=data["id"],
                defaults={
                    "email": primary,
                    "first_name": data["first_name"],
                    "last_name": data["last_name"],
                    "role": (data.get("public_metadata") or {}).get("role"),
                },
            )
        elif event["type"] == "user.deleted":
            Student.objects.filter(clerk_id=data["id"]).delete()
    return JsonResponse({"success": True})


@require_GET
def students(request):
    rows = {
        s.clerk_id: {"email": s.email, "first_name": s.first_name, "last_name": s.last_name, "role": s.role}
        for s in Student.objects.all()
    }
    return JsonResponse({"students": rows, "events": list(ProcessedWebhook.objects.values_list("type", flat=True))})


urlpatterns = [
    path("webhooks/clerk/", clerk_webhook),
    path("webhooks/clerk/users/", students),
    path("api/dashboard/", dashboard),
    path("api/roles/", set_role),
]


def main(port: int) -> None:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command
    from django.db import connection

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    # One thread: the in-memory database belongs to this thread's connection.
    call_command("migrate", run_syncdb=True, verbosity=0)
    with connection.schema_editor() as editor:
        editor.create_model(Student)
        editor.create_model(ProcessedWebhook)
    httpd = make_server("127.0.0.1", port, WSGIHandler(), handler_class=Quiet)
    print("ready", flush=True)
    httpd.serve_forever(poll_interval=0.1)


if __name__ == "__main__":
    main(int(sys.argv[1]))
