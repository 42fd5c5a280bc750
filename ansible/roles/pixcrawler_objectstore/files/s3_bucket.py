"""Make sure an S3 bucket exists, as one S3 identity, with nothing but Python's stdlib.

Run by the pixcrawler_objectstore role on the store's own host (Debian's python3, no
packages) as the admin identity. The keys arrive on stdin, the access key on the first
line and the secret key on the second, so they are never on a command line. Requests are
signed with AWS Signature Version 4, path style (http://host:port/bucket). An https://
endpoint is verified against --cafile (the environment's CA) or the system's CAs.

    s3_bucket.py --endpoint http://127.0.0.1:8333 --bucket pixcrawler-images [--check]

Prints one JSON document, {"bucket": ..., "created": true|false}, and exits 0 when the
bucket exists afterwards (with --check: would be created, nothing is sent but HEAD);
exit 1, with the store's answer, on anything else (a refused identity, say).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import ssl
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signed_request(
    method: str, url: str, region: str, access_key: str, secret_key: str
) -> urllib.request.Request:
    """An empty-bodied request with SigV4 headers (Host, x-amz-date, x-amz-content-sha256)."""
    parts = urlsplit(url)
    now = datetime.now(UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {"host": parts.netloc, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            quote(parts.path or "/", safe="/-_.~"),
            "",
            "".join(f"{name}:{headers[name]}\n" for name in sorted(headers)),
            signed,
            EMPTY_SHA256,
        ]
    )
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + secret_key).encode(), day)
    for part in (region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    request = urllib.request.Request(url, method=method)  # noqa: S310 - http(s) checked in main
    request.add_header("x-amz-date", amz_date)
    request.add_header("x-amz-content-sha256", EMPTY_SHA256)
    request.add_header(
        "Authorization",
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}",
    )
    return request


def status(
    request: urllib.request.Request, timeout: float, context: ssl.SSLContext | None = None
) -> tuple[int, str]:
    """The HTTP status and the start of the body (S3 error codes are in the body)."""
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(300).decode(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True, help="http://host:port of the S3 API")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--cafile", default="", help="CA to verify an https:// endpoint with")
    parser.add_argument("--check", action="store_true", help="only report what would change")
    args = parser.parse_args()
    lines = sys.stdin.read().splitlines()
    if len(lines) < 2 or not lines[0] or not lines[1]:
        print("expected the access key and the secret key on stdin, one per line", file=sys.stderr)
        return 2
    access_key, secret_key = lines[0].strip(), lines[1].strip()
    if urlsplit(args.endpoint).scheme not in ("http", "https"):
        parser.error("--endpoint must be an http:// or https:// URL")
    url = f"{args.endpoint.rstrip('/')}/{quote(args.bucket, safe='')}"
    context = ssl.create_default_context(cafile=args.cafile or None)

    def ask(method: str) -> tuple[int, str]:
        request = signed_request(method, url, args.region, access_key, secret_key)
        return status(request, args.timeout, context)

    code, body = ask("HEAD")
    if code == 200:
        created = False
    elif code == 404 and args.check:
        created = True
    elif code == 404:
        code, body = ask("PUT")
        if code != 200:
            print(f"PUT {url}: HTTP {code} {body}", file=sys.stderr)
            return 1
        created = True
    else:
        print(f"HEAD {url}: HTTP {code} {body}", file=sys.stderr)
        return 1
    print(json.dumps({"bucket": args.bucket, "created": created}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
