"""Validation tasks (``validator.tasks.*``, routed to the ``validation`` queue)."""

from __future__ import annotations

from typing import Any

from pixcrawler.celery_core.app import get_celery_app, result_client
from pixcrawler.celery_core.base import BaseTask, classify
from pixcrawler.celery_core.config import CelerySettings
from pixcrawler.celery_core.errors import InvalidPayload, TaskError, TransientError
from pixcrawler.storage import ObjectMissing, ObjectTooLarge, OutsideStore, get_store
from pixcrawler.validator.images import ImageInfo, inspect_image

app = get_celery_app()

SEEN_KEY = "pixcrawler:seen:{sha256}"


def _paths(payload: Any) -> list[str]:
    """Accept a crawl result (``{"files": [...]}``), one reference, or a list of them.

    A reference is what the crawl put in ``files``: a path in a local store, an
    ``s3://`` URL in an S3 store.
    """
    if isinstance(payload, dict) and "files" in payload:
        payload = payload["files"]
    paths = [payload] if isinstance(payload, str) else payload
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise InvalidPayload(
            message="expected a crawl result, a stored image reference, or a list of them"
        )
    if not paths:
        raise InvalidPayload(message="there is no file to validate")
    return paths


def _first_seen_by(task: BaseTask, hashes: list[str], settings: CelerySettings) -> list[str | None]:
    """Register each hash; for each, the task id that saw it first if that was another task.

    One pipeline for the whole list (a SET NX and a GET per hash, in order), so a batch
    pays one round trip to Redis, not one per file; a hash twice in the list is the same
    task's both times, as before.
    """
    client = result_client(task.app)
    me = task.request.id or "direct-call"
    pipe = client.pipeline(transaction=False)
    for sha256 in hashes:
        key = SEEN_KEY.format(sha256=sha256)
        pipe.set(key, me, nx=True, ex=settings.storage_retention_seconds)
        pipe.get(key)
    replies = pipe.execute()
    owners: list[str | None] = []
    for created, owner in zip(replies[::2], replies[1::2], strict=True):
        owner_id = owner.decode() if isinstance(owner, bytes) else owner
        owners.append(None if created or owner_id == me else str(owner_id))
    return owners


def inspect_one(path: str, settings: CelerySettings) -> tuple[str, ImageInfo] | dict[str, Any]:
    """(reference, image info) for a file that passes, or its ``invalid`` outcome."""
    store = get_store(settings)
    try:
        ref = store.resolve(path)
        # Never more than a crawl may store: the bound holds for references from anywhere.
        return ref, inspect_image(store.read(ref, settings.crawl_max_bytes), settings)
    except ObjectMissing:
        return _error(path, TaskError("missing_file", "file does not exist"))
    except OutsideStore as exc:
        return _error(path, TaskError("outside_store", str(exc)))
    except ObjectTooLarge as exc:
        return _error(path, TaskError("too_large", str(exc)))
    except Exception as exc:
        return _error(path, classify(exc))


def validate_paths(
    task: BaseTask, paths: list[str], settings: CelerySettings
) -> list[dict[str, Any]]:
    """Per-file outcomes, in the order of *paths*: each file checked, then the hashes of
    those that passed registered in one round trip."""
    checked = [inspect_one(p, settings) for p in paths]
    passed = [(i, c) for i, c in enumerate(checked) if isinstance(c, tuple)]
    outcomes: list[dict[str, Any]] = [c if isinstance(c, dict) else {} for c in checked]
    if not passed:
        return outcomes
    try:
        owners = _first_seen_by(task, [info.sha256 for _, (_, info) in passed], settings)
    except Exception as exc:  # Redis unreachable: each file says so, as it always did
        error = classify(exc)
        for i, _ in passed:
            outcomes[i] = _error(paths[i], error)
        return outcomes
    for (i, (ref, info)), duplicate_of in zip(passed, owners, strict=True):
        outcomes[i] = {
            "path": ref,
            "status": "duplicate" if duplicate_of else "valid",
            "duplicate_of": duplicate_of,
            "format": info.format,
            "width": info.width,
            "height": info.height,
            "mode": info.mode,
            "sha256": info.sha256,
        }
    return outcomes


def _error(path: str, error: TaskError) -> dict[str, Any]:
    return {
        "path": path,
        "status": "invalid",
        "error": error.code,
        "message": error.message,
        "retryable": error.retryable,
    }


@app.task(bind=True, base=BaseTask, name="validator.tasks.validate_task")
def validate_task(self: BaseTask, payload: Any) -> dict[str, Any]:
    """Verify images from a crawl; FAILURE when none of them is acceptable."""
    settings = self.settings
    outcomes = validate_paths(self, _paths(payload), settings)
    invalid = [o for o in outcomes if o["status"] == "invalid"]
    if len(invalid) == len(outcomes):
        if len(outcomes) == 1:
            only = invalid[0]
            error_type = TransientError if only["retryable"] else TaskError
            raise error_type(only["error"], only["message"], {"outcomes": outcomes})
        raise TaskError("validation_failed", "no file is a valid image", {"outcomes": outcomes})
    return {
        "valid": [o["path"] for o in outcomes if o["status"] == "valid"],
        "duplicates": sum(o["status"] == "duplicate" for o in outcomes),
        "invalid": len(invalid),
        "outcomes": outcomes,
    }
