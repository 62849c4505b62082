#!/usr/bin/env python3
"""A test web server on 127.0.0.1: serves what ROUTES (a JSON file, read at every request) says.

Usage: http_server.py ROUTES LOG PORTFILE [CERT KEY]   (PORT in the environment: that port)
Each route: {"status": 200, "headers": {...}, "file": PATH, "etag": "...",
             "mode": "normal" | "truncate" | "endless" | "cut", "cut": BYTES, "ranges": true,
             "location": URL, "first_status": 202, "first_headers": {...}, "delay": SECONDS}
"cut" sends the full Content-Length but only the first BYTES of a request without Range, then
closes; "first_status" answers the first request for the path with that status, "first_headers" and
no body;
"delay" waits before the body; "ranges" answers
`Range: bytes=N-` (when If-Range, if any, is the etag) with 206 and the rest.
A request whose If-None-Match equals the route's etag gets 304. Every request is appended to LOG
as one JSON line (time, method, path, if-none-match, authorization, range, if-range). The chosen port goes to PORTFILE.
A POST is answered from the route "POST PATH" (status and body only), and its body logged as "form".
"""
import http.server
import json
import os
import ssl
import sys
import threading
import time

ROUTES, LOG, PORTFILE = sys.argv[1:4]
TLS = sys.argv[4:6]
SEEN = set()
SEEN_LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        with open(LOG, "a") as log:
            log.write(json.dumps({
                "time": time.time(), "method": "GET", "path": self.path,
                "if-none-match": self.headers.get("If-None-Match"),
                "authorization": self.headers.get("Authorization"),
                "range": self.headers.get("Range"),
                "if-range": self.headers.get("If-Range"),
            }) + "\n")
        with open(ROUTES) as f:
            routes = json.load(f)
        route = routes.get(self.path)
        if route is None:
            body = b"<html><body>404 Not Found</body></html>"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        with SEEN_LOCK:
            first = self.path not in SEEN
            SEEN.add(self.path)
        if first and route.get("first_status"):
            self.send_response(route["first_status"])
            for k, v in route.get("first_headers", {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        etag = route.get("etag")
        if etag and self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            for k, v in route.get("headers", {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b""
        if route.get("file"):
            with open(route["file"], "rb") as f:
                body = f.read()
        elif route.get("body") is not None:
            body = route["body"].encode()
        start = 0
        wanted = self.headers.get("Range", "")
        if route.get("ranges") and wanted.startswith("bytes=") and wanted.endswith("-") \
                and self.headers.get("If-Range") in (None, etag):
            start = int(wanted[len("bytes="):-1])
        self.send_response(206 if start else route.get("status", 200))
        if start:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(body) - 1, len(body)))
            body = body[start:]
        if etag:
            self.send_header("ETag", etag)
        if route.get("location"):
            self.send_header("Location", route["location"])
        for k, v in route.get("headers", {}).items():
            self.send_header(k, v)
        mode = route.get("mode", "normal")
        if mode == "endless":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = body + b"\0" * 65536
            try:
                for _ in range(4096):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    chunk = b"\0" * 65536
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        length = len(body) * 2 if mode == "truncate" else len(body)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if route.get("delay"):
            time.sleep(route["delay"])
        if mode == "cut" and not start:
            self.wfile.write(body[:route["cut"]])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)
        if mode == "truncate":
            self.close_connection = True

    def do_POST(self):
        form = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode("utf-8", "replace")
        with open(LOG, "a") as log:
            log.write(json.dumps({
                "time": time.time(), "method": "POST", "path": self.path, "form": form,
                "content-type": self.headers.get("Content-Type"),
                "authorization": self.headers.get("Authorization"),
            }) + "\n")
        with open(ROUTES) as f:
            route = json.load(f).get("POST " + self.path)
        status, body = (404, b"not found") if route is None else (route.get("status", 200), route.get("body", "").encode())
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "0"))), Handler)
if TLS:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS[0], TLS[1])
    server.socket = context.wrap_socket(server.socket, server_side=True)
with open(PORTFILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(PORTFILE + ".tmp", PORTFILE)
server.serve_forever()
