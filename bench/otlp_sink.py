#!/usr/bin/env python3
"""An OTLP/HTTP sink for bench/ab.sh's traced modes: accepts every POST (keep-alive, HTTP/1.1),
reads its body and answers 200 with an empty body. It decodes nothing: the benchmark measures
the proxy's cost of tracing, and a collector's own work is not the proxy's.

    python3 bench/otlp_sink.py PORT
"""

import http.server
import sys


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (the stdlib's name)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
