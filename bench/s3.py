"""A small S3 client for the benchmark's object-store mode: SigV4 signing (path-style, one
region), PUT, HEAD, DELETE and ListObjectsV2, and a pool of threads that PUTs many small objects
at once. The standard library only (CI has no boto3); enough for Garage on loopback.

    s3 = S3(endpoint, region, bucket, access_key, secret_key)
    s3.put("prefix/key", b"bytes")
    s3.put_many(iterable of (key, bytes), threads=16)
    keys = s3.list("prefix/")          # every key under a prefix, paginated
"""

import datetime
import hashlib
import hmac
import http.client
import queue
import threading
import time
import xml.etree.ElementTree as ET
from urllib.parse import quote, urlsplit

UNSIGNED = "UNSIGNED-PAYLOAD"
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _hmac(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class S3:
    def __init__(self, endpoint, region, bucket, access_key, secret_key, timeout=60):
        url = urlsplit(endpoint)
        if url.scheme != "http":
            raise ValueError(f"{endpoint}: only plain http endpoints (loopback) are supported")
        self.host, self.port = url.hostname, url.port or 80
        self.region, self.bucket = region, bucket
        self.access, self.secret = access_key, secret_key
        self.timeout = timeout
        self._local = threading.local()

    # -- signing -------------------------------------------------------------------------------
    def _headers(self, method, path, query, extra=None):
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        headers = {"host": f"{self.host}:{self.port}", "x-amz-content-sha256": UNSIGNED,
                   "x-amz-date": amz_date, **{k.lower(): v for k, v in (extra or {}).items()}}
        names = sorted(headers)
        canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                                   for k, v in sorted(query.items()))
        canonical = "\n".join([method, quote(path, safe="/-_.~"), canonical_query,
                               "".join(f"{n}:{str(headers[n]).strip()}\n" for n in names),
                               ";".join(names), UNSIGNED])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = _hmac(_hmac(_hmac(_hmac(("AWS4" + self.secret).encode(), day), self.region),
                          "s3"), "aws4_request")
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={signature}")
        return headers, canonical_query

    def _conn(self):
        c = getattr(self._local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = c
        return c

    def request(self, method, key="", query=None, body=b"", ok=(200, 204), tries=8):
        """One signed request on this thread's connection; returns (status, body bytes). A
        closed connection, a 500 or a 503 (Garage answers "database is locked" when many
        writers meet in its SQLite) is tried again, up to `tries` times, backing off."""
        path = f"/{self.bucket}" + (f"/{key}" if key else "")
        for attempt in range(tries):
            if attempt:
                time.sleep(min(0.02 * 2 ** attempt, 2.0))
            headers, q = self._headers(method, path, query or {})
            headers["content-length"] = str(len(body))
            c = self._conn()
            try:
                c.request(method, quote(path, safe="/-_.~") + (f"?{q}" if q else ""), body=body,
                          headers=headers)
                r = c.getresponse()
                data = r.read()
            except (http.client.HTTPException, ConnectionError, OSError):
                c.close()
                self._local.conn = None
                if attempt == tries - 1:
                    raise
                continue
            if r.status not in (500, 503):
                break
        if r.status not in ok:
            raise RuntimeError(f"S3 {method} {path}: {r.status} {data[:300]!r}")
        return r.status, data

    # -- operations ----------------------------------------------------------------------------
    def put(self, key, data):
        self.request("PUT", key, body=data)

    def head(self, key):
        """The object's size, or None if there is none."""
        status, _ = self.request("HEAD", key, ok=(200, 404))
        return None if status == 404 else True

    def delete(self, key):
        self.request("DELETE", key, ok=(200, 204, 404))

    def list(self, prefix):
        """Every key under `prefix` (ListObjectsV2, 1,000 per page)."""
        keys, token = [], None
        while True:
            query = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
            if token:
                query["continuation-token"] = token
            _, data = self.request("GET", "", query=query)
            root = ET.fromstring(data)
            keys += [c.findtext(f"{NS}Key") for c in root.iter(f"{NS}Contents")]
            token = root.findtext(f"{NS}NextContinuationToken")
            if root.findtext(f"{NS}IsTruncated") != "true" or not token:
                return keys

    def put_many(self, items, threads=16):
        """PUTs every (key, bytes) of `items` from `threads` threads; returns how many. The
        first error stops the others and is raised."""
        work = queue.Queue(maxsize=threads * 64)
        errors, count = [], [0]
        lock = threading.Lock()

        def worker():
            n = 0
            while True:
                item = work.get()
                if item is None:
                    break
                if errors:
                    continue
                try:
                    self.put(*item)
                    n += 1
                except Exception as e:  # noqa: BLE001 - raised below, in the caller's thread
                    errors.append(e)
            with lock:
                count[0] += n

        pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
        for t in pool:
            t.start()
        try:
            for item in items:
                if errors:
                    break
                work.put(item)
        finally:
            for _ in pool:
                work.put(None)
            for t in pool:
                t.join()
        if errors:
            raise errors[0]
        return count[0]
