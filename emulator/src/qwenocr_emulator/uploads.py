"""Upload paths: the SDK's file:// flow (getPolicy + OSS-style POST) and the native /api/v1/files upload.

The dashscope SDK turns a local ``file://`` image into: ``GET /api/v1/uploads?action=getPolicy&model=M``
→ a policy whose ``upload_host`` we point at ourselves (``<base>/emulator/oss``) → a multipart POST of the
file with ``key=<upload_dir>/<name>`` → the image becomes ``oss://<key>`` and the generation call carries
``X-DashScope-OssResourceResolve: enable``. Objects live in memory (``state.oss``) for the server's life.

``POST /api/v1/files`` (native, "file-extract" purpose): ``purpose`` must be ``file-extract`` (the
recorded 400 body otherwise); at most 10 files per call are accepted, extra ones are reported in
``failed_uploads`` with ``BadRequest.TooMany`` as in the recording.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid

from fastapi import FastAPI, Request
from starlette.responses import Response

from qwenocr_emulator.responses import json_response
from qwenocr_emulator.state import EmulatorState, invalid_parameter

OSS_PATH = "/emulator/oss"
MAX_FILES_PER_CALL = 10
POLICY_TTL_S = 300


def register_upload_routes(app: FastAPI, state: EmulatorState) -> None:
    @app.get("/api/v1/uploads")
    async def get_policy(request: Request) -> Response:
        state.check_auth(request)
        rid = request.state.request_id
        if request.query_params.get("action") != "getPolicy":
            raise invalid_parameter("The only supported action is getPolicy.")
        model = request.query_params.get("model") or "unknown"
        day = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
        upload_dir = f"dashscope-instant/{secrets.token_hex(16)}/{day}/{uuid.uuid4()}"
        data = {
            "policy": secrets.token_urlsafe(48),
            "signature": secrets.token_urlsafe(20),
            "upload_dir": upload_dir,
            "upload_host": str(request.base_url).rstrip("/") + OSS_PATH,
            "expire_in_seconds": POLICY_TTL_S,
            "max_file_size_mb": 100,
            "capacity_limit_mb": 999999999,
            "oss_access_key_id": "LTAI-emulator-" + model[:20],
            "x_oss_object_acl": "private",
            "x_oss_forbid_overwrite": "true",
        }
        return json_response({"request_id": rid, "data": data}, request_id=rid)

    @app.post(OSS_PATH)
    async def oss_upload(request: Request) -> Response:
        form = await request.form()
        key = form.get("key")
        upload = form.get("file")
        if not isinstance(key, str) or not key.startswith("dashscope-instant/") or upload is None \
                or isinstance(upload, str) or not form.get("OSSAccessKeyId") or not form.get("policy"):
            return Response("<Error><Code>InvalidArgument</Code><Message>missing key, file, policy or "
                            "OSSAccessKeyId</Message></Error>", status_code=400, media_type="application/xml")
        state.oss[key] = await upload.read()
        return Response(status_code=200)

    @app.post("/api/v1/files")
    async def upload_files(request: Request) -> Response:
        state.check_auth(request)
        rid = request.state.request_id
        try:
            form = await request.form()
        except Exception:
            form = None
        purpose = form.get("purpose") if form is not None else None
        if purpose != "file-extract":
            return json_response(
                {"error": {"message": "'purpose' must be 'file-extract'", "type": "invalid_request_error",
                           "param": "purpose", "code": None}},
                400, request_id=rid, media_type="application/json;charset=UTF-8")
        uploads = [v for k, v in form.multi_items() if k in ("files", "file") and not isinstance(v, str)]
        if not uploads:
            raise invalid_parameter("No file was uploaded: send multipart field 'files'.")
        done, failed = [], []
        for i, up in enumerate(uploads):
            name = up.filename or f"file{i}"
            if i >= MAX_FILES_PER_CALL:
                failed.append({"name": name, "code": "BadRequest.TooMany",
                               "message": f"Out of number, <{MAX_FILES_PER_CALL}> of <{MAX_FILES_PER_CALL}> "
                                          "files has been uploaded."})
                continue
            file_id = str(uuid.uuid4())
            state.files[file_id] = {"name": name, "bytes": await up.read(), "purpose": purpose}
            done.append({"name": name, "file_id": file_id})
        return json_response({"data": {"uploaded_files": done, "failed_uploads": failed}, "request_id": rid},
                             request_id=rid)
