"""The bucket, as the sync service uses it: conditional, checksummed, encrypted PUTs. The network edge.

Every PUT:
- asks botocore for a CRC32 of the body (`ChecksumAlgorithm`), which S3 checks against the bytes it received
  and returns; the answer must equal the CRC32 we computed of the bytes we read, or the upload does not count.
  CRC32 rather than SHA-256: the threat is a flipped bit between flash and S3 (TLS guards against the rest),
  zlib computes it at gigabytes per second on a Pi, and it is botocore's own default since 1.36;
- carries server-side encryption (`sync.sse`, with `sync.kms_key_id` for `aws:kms`);
- is conditional, so one device's files never overwrite another's (two devices sharing a device id, say a
  cloned SD card): a first upload has `IfNoneMatch: *`, a later one `IfMatch: <the ETag we confirmed>`. When
  the condition fails, a HEAD decides: the same bytes there (our own upload whose confirmation a kill lost)
  count as confirmed; a copy written by this device (`x-amz-meta-edgevoice-writer`, a random id kept in the
  store) is replaced; anything else is a conflict, reported and left alone.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from typing import Any

from ..logs import register_aws_credentials
from ..settings import SyncSettings
from .state import Record

WRITER_META = "edgevoice-writer"
"""Object metadata naming the store (`state.writer_id`) that wrote it."""
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 20.0
"""A stalled connection is given up after this long and retried (botocore's `standard` mode, 3 attempts)."""


class Conflict(Exception):
    """The key holds a copy this device did not write; the message names the key."""


class NotConfirmed(Exception):
    """S3 answered, but not with the checksum of the bytes sent."""


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def client_config(settings: SyncSettings, *, pool: int) -> Any:
    """botocore's Config for every client of the bucket: bounded timeouts, `standard` retries, checksums."""
    from botocore.config import Config  # type: ignore[import-untyped]

    return Config(
        region_name=settings.region,
        retries={"mode": "standard", "total_max_attempts": 3},  # standard mode's own default: 3 in all
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        max_pool_connections=pool,
        request_checksum_calculation="when_supported",
        response_checksum_validation="when_supported",
    )


def boto_session() -> Any:
    """A boto3 Session on the standard AWS credential chain, its credentials registered with the log filter."""
    import boto3  # type: ignore[import-untyped]

    session = boto3.Session()
    register_aws_credentials(session)
    return session


def object_key(settings: SyncSettings, device_id: str, session_name: str, rel: str = "") -> str:
    """The key of `rel` in the session directory `session_name` (`session_<id>`) of a device's folder."""
    return "/".join(p for p in (settings.prefix.strip("/"), device_id, session_name, rel) if p)


def make_client(settings: SyncSettings) -> Any:
    """A boto3 S3 client for `settings`: the standard AWS credential chain, bounded timeouts and pool."""
    from botocore.handlers import add_expect_header  # type: ignore[import-untyped]

    config = client_config(settings, pool=settings.max_concurrency)
    s3 = boto_session().client("s3", endpoint_url=settings.endpoint_url or None, config=config)
    # botocore asks S3 for `100 Continue` before every PUT body, whatever its size: a round trip spent
    # before a message of a few hundred bytes may go, on every upload. It exists so that a large body is
    # not sent only to be refused; ours are small, so they are just sent.
    s3.meta.events.unregister("before-call.s3", add_expect_header)
    return s3


@dataclass(frozen=True)
class Bucket:
    """The device's folder in the bucket: `<prefix>/<device_id>/`."""

    client: Any
    settings: SyncSettings
    device_id: str
    writer: str
    """This store's writer id (`state.writer_id`)."""

    def key(self, session_name: str, rel: str) -> str:
        """The key of `rel` in the session directory `session_name` (`session_<id>`)."""
        return object_key(self.settings, self.device_id, session_name, rel)

    def _sse(self) -> dict[str, str]:
        if self.settings.sse == "aws:kms":
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.settings.kms_key_id}
        return {"ServerSideEncryption": "AES256"}

    def put(self, key: str, body: bytes, previous: Record | None) -> tuple[str, bool]:
        """Upload `body` to `key`; returns (the ETag S3 confirmed, whether this call stored the bytes: False
        when they were there already). `previous`: what we last confirmed there (None: nothing). Raises
        Conflict, NotConfirmed, or botocore's errors (network, 5xx)."""
        crc = crc32_b64(body)
        condition = {"IfMatch": previous.etag} if previous else {"IfNoneMatch": "*"}
        try:
            return self._put(key, body, crc, condition), True
        except Exception as e:
            code = error_code(e)
            if code not in ("PreconditionFailed", "NoSuchKey", "412", "404"):
                raise
        # The condition failed: the key holds something other than what we last confirmed, or nothing.
        head = self._head(key)
        if head is None:
            return self._put(key, body, crc, {"IfNoneMatch": "*"}), True
        if head.get("ChecksumCRC32") == crc and head.get("ContentLength") == len(body):
            return str(head["ETag"]), False  # our own bytes, uploaded before a kill lost the confirmation
        if (head.get("Metadata") or {}).get(WRITER_META) != self.writer:
            raise Conflict(f"s3://{self.settings.bucket}/{key} holds a copy this device did not write")
        return self._put(key, body, crc, {"IfMatch": str(head["ETag"])}), True

    def _put(self, key: str, body: bytes, crc: str, condition: dict[str, str]) -> str:
        answer = self.client.put_object(
            Bucket=self.settings.bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            ChecksumAlgorithm="CRC32",
            Metadata={WRITER_META: self.writer},
            **self._sse(),
            **condition,
        )
        if answer.get("ChecksumCRC32") != crc:
            raise NotConfirmed(f"s3://{self.settings.bucket}/{key}: S3 confirmed another checksum")
        return str(answer["ETag"])

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.head_object(Bucket=self.settings.bucket, Key=key, ChecksumMode="ENABLED"))
        except Exception as e:
            if error_code(e) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise


def error_code(e: Exception) -> str:
    """The S3 error code of a botocore ClientError ("" for anything else)."""
    response = getattr(e, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def is_transient(e: Exception) -> bool:
    """Failures worth trying again: botocore's network and service errors, and S3 not confirming."""
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    return isinstance(e, (BotoCoreError, ClientError, NotConfirmed, OSError))


def describe(e: Exception) -> str:
    """One line naming the failure, never a credential (botocore's messages hold no secrets; the log filter
    is the second line of defence)."""
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        return f"{err.get('Code', 'error')} (HTTP {status})"
    return f"{type(e).__name__}: {e}".splitlines()[0][:200]
